//! `AsyncSaver`: the saver trait for tokio users (feature `tokio`).
//!
//! Every call runs on tokio's blocking pool, so an fdatasync never stalls the async executor.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{Blob, ChannelVersions, Checkpoint, CheckpointTuple, Config, ListQuery, Metadata, PruneStrategy};
use crate::saver::CheckpointSaver;

/// Async twins of [`CheckpointSaver`]'s methods over any saver.
pub struct AsyncSaver<S: ?Sized> {
    inner: Arc<S>,
}

impl<S: ?Sized> Clone for AsyncSaver<S> {
    fn clone(&self) -> Self {
        AsyncSaver { inner: self.inner.clone() }
    }
}

impl<S: CheckpointSaver + ?Sized + 'static> AsyncSaver<S> {
    /// Wrap a shared saver.
    pub fn new(inner: Arc<S>) -> Self {
        AsyncSaver { inner }
    }

    /// The wrapped saver, for sync calls.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    async fn run<T: Send + 'static>(&self, call: impl FnOnce(&S) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || call(&inner))
            .await
            .map_err(|e| Error::Background(format!("store call did not complete: {e}")))?
    }

    /// See [`CheckpointSaver::get_tuple`].
    pub async fn get_tuple(&self, config: Config) -> Result<Option<CheckpointTuple>> {
        self.run(move |s| s.get_tuple(&config)).await
    }

    /// See [`CheckpointSaver::list`].
    pub async fn list(&self, query: ListQuery) -> Result<Vec<CheckpointTuple>> {
        self.run(move |s| s.list(&query)).await
    }

    /// See [`CheckpointSaver::put`].
    pub async fn put(
        &self,
        config: Config,
        checkpoint: Checkpoint,
        metadata: Metadata,
        new_versions: ChannelVersions,
    ) -> Result<Config> {
        self.run(move |s| s.put(&config, &checkpoint, &metadata, &new_versions)).await
    }

    /// See [`CheckpointSaver::put_writes`].
    pub async fn put_writes(
        &self,
        config: Config,
        writes: Vec<(String, Blob)>,
        task_id: String,
        task_path: String,
    ) -> Result<()> {
        self.run(move |s| s.put_writes(&config, &writes, &task_id, &task_path)).await
    }

    /// See [`CheckpointSaver::delete_thread`].
    pub async fn delete_thread(&self, thread_id: String) -> Result<()> {
        self.run(move |s| s.delete_thread(&thread_id)).await
    }

    /// See [`CheckpointSaver::delete_for_runs`].
    pub async fn delete_for_runs(&self, run_ids: Vec<String>) -> Result<()> {
        self.run(move |s| s.delete_for_runs(&run_ids)).await
    }

    /// See [`CheckpointSaver::copy_thread`].
    pub async fn copy_thread(&self, source: String, target: String) -> Result<()> {
        self.run(move |s| s.copy_thread(&source, &target)).await
    }

    /// See [`CheckpointSaver::prune`].
    pub async fn prune(&self, thread_ids: Vec<String>, strategy: PruneStrategy) -> Result<()> {
        self.run(move |s| s.prune(&thread_ids, strategy)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogStore, Options};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_calls_round_trip_and_run_concurrently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn CheckpointSaver> = Arc::new(LogStore::open(dir.path(), Options::default()).expect("open"));
        let saver = AsyncSaver::new(store);
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let saver = saver.clone();
                tokio::spawn(async move {
                    let mut checkpoint = Checkpoint::empty(format!("{i:04}"));
                    checkpoint
                        .channel_values
                        .insert("x".into(), Blob::new("json", vec![u8::try_from(i).expect("i < 16")]));
                    checkpoint.channel_versions.insert("x".into(), crate::ChannelVersion::Int(i));
                    let versions = checkpoint.channel_versions.clone();
                    saver.put(Config::thread(format!("t{}", i % 4)), checkpoint, Metadata::new(), versions).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("join").expect("put");
        }
        let all = saver.list(ListQuery::all()).await.expect("list");
        assert_eq!(all.len(), 16);
        assert_eq!(all[0].checkpoint.id, "0015");
        let latest = saver.get_tuple(Config::thread("t1")).await.expect("get").expect("t1");
        assert_eq!(latest.checkpoint.channel_values["x"].bytes, vec![13]);
        saver.delete_thread("t1".into()).await.expect("delete");
        assert!(saver.get_tuple(Config::thread("t1")).await.expect("get").is_none());
    }
}
