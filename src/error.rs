//! The one error type of logsaver.
//!
//! Every error names what it is about: the thread, the file and offset, the path that is locked.
//! Bad input and environment trouble are errors, never panics.

use std::io;
use std::path::PathBuf;

/// A result with logsaver's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in logsaver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something the protocol does not allow (an empty `thread_id`,
    /// `put_writes` without a `checkpoint_id`, an unknown prune strategy, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A value or record is larger than the store accepts.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large, e.g. `channel "messages" of thread "t1"`.
        what: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// Another `LogStore` (in this process or another) holds the directory.
    #[error("store {path} is locked by another process or another open LogStore")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },

    /// Bytes on disk failed validation.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The file holding the damaged bytes.
        file: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// An I/O call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"write"`, `"fdatasync"`, `"open"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An earlier write or fsync failed; the store refuses all further work until reopened,
    /// because after a failed fsync the kernel may have dropped dirty pages and retrying could
    /// report success for data that is gone.
    #[error("store is poisoned by an earlier failure: {reason}")]
    Poisoned {
        /// The failure that poisoned the store, as text.
        reason: String,
        /// The operating system's error kind of that failure, if it was an I/O error (EIO,
        /// ENOSPC, ...), so callers can tell a full disk from a failing one.
        kind: Option<io::ErrorKind>,
    },

    /// A call handed to a background thread did not complete (the thread panicked or its
    /// runtime shut down).
    #[error("{0}")]
    Background(String),

    /// The store was opened read-only ([`crate::LogStore::open_read_only`]) and a call would
    /// change it.
    #[error("store {path} is open read-only")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },

    /// The store was closed.
    #[error("store is closed")]
    Closed,

    /// A broken internal invariant: a bug in logsaver, not bad input or bad bytes. Please report
    /// it with the message.
    #[error("internal error (a bug in logsaver): {0}")]
    Invariant(String),
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub(crate) fn invariant(msg: impl Into<String>) -> Self {
        Error::Invariant(msg.into())
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// The `Poisoned` error that `self` leaves behind for every later call.
    pub(crate) fn to_poisoned(&self) -> Error {
        match self {
            Error::Poisoned { reason, kind } => Error::Poisoned { reason: reason.clone(), kind: *kind },
            other => Error::Poisoned { reason: other.to_string(), kind: other.io_kind() },
        }
    }

    /// The operating system's error kind behind this error, if any (a poisoned store keeps the
    /// kind of the failure that poisoned it).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            Error::Poisoned { kind, .. } => *kind,
            _ => None,
        }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}
