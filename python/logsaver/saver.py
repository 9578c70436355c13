"""LogSaver: LangGraph's BaseCheckpointSaver over the Rust log-structured store."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from logsaver import _native
from logsaver.errors import InvalidArgumentError

_DURABILITIES = ("sync", "flush", "none")
_OPTIONS = (
    "segment_size",
    "preallocate",
    "recovery",
    "max_value_bytes",
    "buffer_bytes",
    "auto_compaction",
    "compaction_garbage_ratio",
    "compaction_min_garbage_bytes",
    "compaction_interval_seconds",
    "keep_last",
    "max_age_seconds",
    "retention_interval_seconds",
    "metrics_interval_seconds",
    "deltas",
    "max_chain",
    "compression_level",
    "compress",
    "value_cache_bytes",
)
# "delete_all" is what the LangGraph server sends for "delete".
_STRATEGIES = ("keep_latest", "delete", "delete_all")


class LogSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer backed by logsaver's embedded log-structured store.

    Args:
        path: the store directory (created if missing). One LogSaver per directory at a time:
            a second one, in this process or another, raises StoreLockedError.
        durability: "sync" (default: a write returns after an fdatasync, shared by concurrent
            writers), "flush" (handed to the OS: survives a process crash) or "none" (buffered
            until flush()/close()).
        serde: the serializer for channel values and writes (default: LangGraph's
            JsonPlusSerializer). Looked up at every call, so it can be replaced afterwards.
        **options: segment_size, preallocate, recovery ("tolerate_torn_tail",
            "absolute_consistency", "skip_corrupted"), max_value_bytes, buffer_bytes;
            auto_compaction (default True), compaction_garbage_ratio, compaction_min_garbage_bytes,
            compaction_interval_seconds; retention: keep_last, max_age_seconds,
            retention_interval_seconds (apply in the background that often); metrics_interval_seconds
            (how often the writer leaves its metrics in METRICS.json for `logsaver stats`);
            values: deltas (default True: a new version of a channel is stored as a delta
            against its previous one when smaller), max_chain (default 64: a read decodes at most
            that many deltas), compression_level (zstd, default 1) or compress=False,
            value_cache_bytes (default 64 MiB: each channel's last value, so writes and latest
            reads decode no chain).
        read_only: open beside a writer in another process (or an archived store) without
            taking its lock or changing a byte: every call first catches up with what the writer
            committed; write calls raise StoreReadOnlyError. `logsaver stats/threads/show` use the
            same mode.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "sync",
        serde: SerializerProtocol | None = None,
        read_only: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(serde=serde)
        if durability not in _DURABILITIES:
            raise InvalidArgumentError(f"durability must be one of {_DURABILITIES}, not {durability!r}")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InvalidArgumentError(f"unknown LogSaver option(s) {unknown}; known options: {list(_OPTIONS)}")
        self.path = os.fspath(path)
        self.durability = durability
        self.read_only = read_only
        self._store = _native.Store(self.path, durability, read_only=read_only, **options)
        # "flush" and "none" writes copy into the page cache or a buffer holding the GIL
        # throughout (see the binding; a rare fdatasync, at a segment's seal or a maintenance
        # pause, stalls every thread either way): a worker thread would only add its hand-off,
        # so their async twins run them on the event loop, serializer included, as
        # InMemorySaver does. "sync" writes wait for an fdatasync and go to a worker thread,
        # where concurrent writers share one.
        self._writes_inline = durability != "sync"

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def from_conn_string(cls, path: str | os.PathLike[str], **kwargs: Any) -> Iterator[LogSaver]:
        """Open a saver for the duration of a with-block (the SqliteSaver convention)."""
        saver = cls(path, **kwargs)
        try:
            yield saver
        finally:
            saver.close()

    def close(self) -> None:
        """Flush and close. Closing twice is harmless; using a closed saver raises SaverClosedError."""
        self._store.close()

    def flush(self) -> None:
        """Make everything written so far survive a power cut (for durability "flush"/"none")."""
        self._store.flush()

    def compact(self) -> dict[str, Any]:
        """Rewrite every segment's live records, reclaiming all garbage. Readers and writers keep
        working meanwhile. Returns bytes_before/bytes_after (the segments rewritten, and what
        replaced them), store_bytes_before/store_bytes_after (all segment files, including the
        active segment's preallocated space), segments_rewritten, segments_written,
        bytes_copied, records_copied, records_dropped and seconds."""
        return self._store.compact()

    def apply_retention(self) -> dict[str, int]:
        """Apply keep_last / max_age_seconds now: checkpoints_removed, parents_cleared."""
        return self._store.apply_retention()

    def space(self) -> dict[str, Any]:
        """file_bytes, record_bytes, live_bytes, garbage_ratio, segments."""
        return self._store.space()

    def backup(self, dest: str | os.PathLike[str]) -> dict[str, Any]:
        """Copy the store to ``dest`` (a new or empty directory) while writers keep going: a
        consistent copy holding every call that returned before this one began, which opens as a
        normal store (restore = open it). Works on a read-only saver beside a writer too.
        Returns segments, bytes and seconds."""
        return self._store.backup(os.fspath(dest))

    def metrics(self) -> dict[str, Any]:
        """Per-operation calls, errors and latency (count/mean/p50/p99/max in µs) for put,
        put_writes, get_tuple, list, the maintenance calls, compaction, retention and backup;
        fsyncs and their latency, commit group sizes, bytes written and read."""
        return json.loads(self._store.metrics_json())

    def threads(self) -> list[tuple[str, int, str | None]]:
        """Every thread: (thread_id, checkpoint count, id of its newest checkpoint), by id."""
        return self._store.threads()

    def value_space(self) -> dict[str, Any]:
        """How the live channel values are stored: values, whole, deltas, compressed,
        logical_bytes (what they are), stored_bytes (what their records take), ratio, and the
        value cache's budget, use, hits and misses."""
        return self._store.value_space()

    def stats(self) -> dict[str, int]:
        """Counters: threads, checkpoints, blobs, write records, segments, commits, fsyncs, bytes."""
        return self._store.stats()

    def __enter__(self) -> LogSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol ------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        # One native call: the config is checked, read and answered there.
        return self._store.read_tuple(config, self.serde.loads_typed)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        if limit is not None and limit <= 0:
            return
        thread_id = ns = checkpoint_id = None
        if config is not None:
            configurable = config.get("configurable") or {}
            if configurable.get("thread_id") is not None:
                thread_id = str(configurable["thread_id"])
            ns = configurable.get("checkpoint_ns")
            checkpoint_id = get_checkpoint_id(config)
        before_id = get_checkpoint_id(before) if before else None
        filter_json = json.dumps(filter, ensure_ascii=False) if filter else None
        yield from self._store.read_list(
            thread_id, ns, checkpoint_id, filter_json, before_id, limit, self.serde.loads_typed
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        # One native call: it checks the config, merges the metadata with LangGraph's
        # get_checkpoint_metadata, serializes each new value with dumps_typed and stores.
        return self._store.put(config, checkpoint, metadata, new_versions, self.serde.dumps_typed)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._store.put_writes(config, writes, task_id, task_path, self.serde.dumps_typed)

    def delete_thread(self, thread_id: str) -> None:
        self._store.delete_thread(str(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run ids, not a single string")
        self._store.delete_for_runs([str(run_id) for run_id in run_ids])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._store.copy_thread(str(source_thread_id), str(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread ids, not a single string")
        if strategy not in _STRATEGIES:
            raise InvalidArgumentError(f"unknown prune strategy {strategy!r}; expected one of {_STRATEGIES}")
        self._store.prune(
            [str(thread_id) for thread_id in thread_ids], "delete" if strategy == "delete_all" else strategy
        )

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The parent-chain walk of BaseCheckpointSaver, done inside the store in one call."""
        if not channels:
            return {}
        raw = self._store.get_delta_channel_history(config, list(channels))
        loads = self.serde.loads_typed
        result: dict[str, DeltaChannelHistory] = {}
        for channel in channels:
            writes, seed = raw[channel]
            entry: DeltaChannelHistory = {
                "writes": [(task_id, ch, loads(blob)) for task_id, ch, blob, _path in writes]
            }
            if seed is not None:
                entry["seed"] = loads(seed)
            result[channel] = entry
        return result

    def get_next_version(self, current: str | None, channel: None = None) -> str:
        """LangGraph's version scheme: a zero-padded counter and a random suffix."""
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- async twins: the same calls on a worker thread, so an fsync or a read from disk never
    # blocks the loop; "flush"/"none" writes, which wait for neither, run on the loop. ---------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def aget(self, config: RunnableConfig) -> Checkpoint | None:
        # Defined here (not inherited) because the LangGraph server requires a custom
        # checkpointer to override aget.
        found = await self.aget_tuple(config)
        return None if found is None else found.checkpoint

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        tuples = await asyncio.to_thread(
            lambda: [*self.list(config, filter=filter, before=before, limit=limit)]
        )
        for item in tuples:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        if self._writes_inline:
            return self.put(config, checkpoint, metadata, new_versions)
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if self._writes_inline:
            self.put_writes(config, writes, task_id, task_path)
            return
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await asyncio.to_thread(self.get_delta_channel_history, config=config, channels=channels)


__all__ = ["LogSaver"]
