"""logsaver: a fast, durable, embedded LangGraph checkpointer.

    from logsaver import LogSaver
    graph = builder.compile(checkpointer=LogSaver("./ckpt"))
"""

from logsaver._native import __version__
from logsaver.errors import (
    CorruptionError,
    InvalidArgumentError,
    LogSaverError,
    SaverClosedError,
    StoreLockedError,
    StorePoisonedError,
    StoreReadOnlyError,
)
from logsaver.migrate import migrate
from logsaver.saver import LogSaver

__all__ = [
    "__version__",
    "LogSaver",
    "migrate",
    "LogSaverError",
    "StoreLockedError",
    "CorruptionError",
    "SaverClosedError",
    "StorePoisonedError",
    "InvalidArgumentError",
    "StoreReadOnlyError",
]
