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
    """An earlier write or fsync failed; reopen the store to recover from what is on disk."""


class InvalidArgumentError(LogSaverError, ValueError):
    """A call was given something the protocol does not allow."""


__all__ = [
    "LogSaverError",
    "StoreLockedError",
    "CorruptionError",
    "SaverClosedError",
    "StorePoisonedError",
    "InvalidArgumentError",
]
