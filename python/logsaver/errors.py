"""Exceptions raised by logsaver. Every one derives from :class:`LogSaverError`."""


class LogSaverError(Exception):
    """Base class of every logsaver error."""


class StoreLockedError(LogSaverError):
    """Another process (or another open LogSaver in this one) holds the store directory."""


class CorruptionError(LogSaverError):
    """Bytes on disk failed validation; the message names the file and offset."""


class SaverClosedError(LogSaverError):
    """The saver was closed."""


class StorePoisonedError(LogSaverError):
    """An earlier write or fsync failed; reopen the store to recover from what is on disk.

    ``kind`` names the I/O failure that poisoned the store as Rust's ``io::ErrorKind`` spells it
    (``"StorageFull"`` for ENOSPC, ``"Other"`` or ``"Uncategorized"`` for EIO), or is ``None``.
    """

    def __init__(self, message: str, kind: "str | None" = None) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidArgumentError(LogSaverError, ValueError):
    """A call was given something the protocol does not allow."""


class StoreReadOnlyError(LogSaverError):
    """A write call on a saver opened with ``read_only=True``."""


__all__ = [
    "LogSaverError",
    "StoreLockedError",
    "CorruptionError",
    "SaverClosedError",
    "StorePoisonedError",
    "InvalidArgumentError",
    "StoreReadOnlyError",
]
