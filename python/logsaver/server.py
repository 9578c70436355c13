"""LogSaver as the checkpointer of the LangGraph server (``langgraph dev``, LangGraph Platform).

In ``langgraph.json``::

    "checkpointer": {
        "path": "logsaver.server.checkpointer",
        "ttl": {"strategy": "delete", "default_ttl": 1440, "sweep_interval_minutes": 10}
    }

The server imports ``checkpointer`` (the dotted form: its ``module:function`` form splits at the
last dot), calls it with no arguments and enters it as an async context manager, once per OS
thread it runs graphs on; every entry in one process shares one open saver (a store directory
has one writer), closed when the last one exits.

Configured by environment variables:

- ``LOGSAVER_PATH``: the store directory (default ``.langgraph_api/logsaver``);
- ``LOGSAVER_DURABILITY``: ``sync`` (default), ``flush`` or ``none``;
- ``LOGSAVER_OPTIONS``: a JSON object of further ``LogSaver`` options, e.g.
  ``{"segment_size": 16777216, "keep_last": 50}``.

Thread TTL: the server's in-memory runtime parses ``checkpointer.ttl`` but applies nothing for a
custom checkpointer, so the saver sweeps itself. The settings come from ``LANGGRAPH_THREAD_TTL``
(minutes, or the JSON block) if set, else from the ``ttl`` block of the ``LANGGRAPH_CHECKPOINTER``
JSON the server exports. Every ``sweep_interval_minutes`` (default 5), threads whose newest
checkpoint is older than ``default_ttl`` minutes are deleted (``strategy: "delete"``, the
default) or pruned to their latest checkpoint (``"keep_latest"``), at most ``sweep_limit``
(default 10000) per sweep, through the saver's own ``adelete_thread`` / ``aprune``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from logsaver.errors import InvalidArgumentError
from logsaver.saver import LogSaver

logger = logging.getLogger("logsaver.server")

DEFAULT_PATH = os.path.join(".langgraph_api", "logsaver")


@dataclass(frozen=True)
class ThreadTTL:
    """The server's ``ttl`` settings, in its units (minutes)."""

    strategy: str = "delete"
    default_ttl_minutes: float | None = None
    sweep_interval_minutes: float = 5.0
    sweep_limit: int = 10_000

    @classmethod
    def from_config(cls, block: Mapping[str, Any] | float | int | str | None) -> ThreadTTL | None:
        """The block of ``langgraph.json`` (or ``LANGGRAPH_THREAD_TTL``: a number of minutes or
        that JSON block); None when no TTL is configured."""
        if block is None or block == "":
            return None
        if isinstance(block, str):
            try:
                block = json.loads(block)
            except json.JSONDecodeError as error:
                raise InvalidArgumentError(f"thread TTL {block!r} is neither minutes nor a JSON object") from error
        if isinstance(block, (int, float)) and not isinstance(block, bool):
            return cls(default_ttl_minutes=float(block))
        if not isinstance(block, Mapping):
            raise InvalidArgumentError(f"thread TTL must be minutes or an object, not {block!r}")
        strategy = block.get("strategy") or "delete"
        if strategy not in ("delete", "keep_latest"):
            raise InvalidArgumentError(f"ttl strategy must be 'delete' or 'keep_latest', not {strategy!r}")
        ttl = block.get("default_ttl")
        if ttl is None:
            return None
        return cls(
            strategy=strategy,
            default_ttl_minutes=float(ttl),
            sweep_interval_minutes=float(block.get("sweep_interval_minutes") or 5.0),
            sweep_limit=int(block.get("sweep_limit") or 10_000),
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ThreadTTL | None:
        if environ.get("LANGGRAPH_THREAD_TTL"):
            return cls.from_config(environ["LANGGRAPH_THREAD_TTL"])
        checkpointer = environ.get("LANGGRAPH_CHECKPOINTER")
        if checkpointer:
            try:
                block = json.loads(checkpointer)
            except json.JSONDecodeError:
                return None
            if isinstance(block, Mapping):
                return cls.from_config(block.get("ttl"))
        return None


def checkpoint_time(checkpoint_id: str) -> float | None:
    """Unix time of a uuid6 / uuid7 / uuid1 checkpoint id (LangGraph's ids are uuid6)."""
    try:
        value = uuid.UUID(checkpoint_id)
    except ValueError:
        return None
    if value.version == 7:
        return (value.int >> 80) / 1000.0
    if value.version == 6:
        ticks = ((value.int >> 96) << 28) | (((value.int >> 80) & 0xFFFF) << 12) | ((value.int >> 64) & 0x0FFF)
    elif value.version == 1:
        ticks = value.time
    else:
        return None
    return (ticks - 0x01B21DD213814000) / 1e7


def expired_threads(saver: LogSaver, ttl_seconds: float, limit: int, now: float | None = None) -> list[tuple[str, int]]:
    """Threads whose newest checkpoint is older than ``ttl_seconds``, oldest first: (id, count)."""
    cutoff = (time.time() if now is None else now) - ttl_seconds
    aged = []
    for thread_id, count, latest in saver.threads():
        written = checkpoint_time(latest) if latest else None
        if written is not None and written < cutoff:
            aged.append((written, thread_id, count))
    aged.sort()
    return [(thread_id, count) for _, thread_id, count in aged[:limit]]


async def sweep(saver: LogSaver, ttl: ThreadTTL, now: float | None = None) -> int:
    """Apply the TTL once; returns the threads deleted or pruned."""
    if ttl.default_ttl_minutes is None:
        return 0
    expired = await asyncio.to_thread(expired_threads, saver, ttl.default_ttl_minutes * 60.0, ttl.sweep_limit, now)
    if ttl.strategy == "delete":
        for thread_id, _ in expired:
            await saver.adelete_thread(thread_id)
        return len(expired)
    # keep_latest: a thread already down to one checkpoint has nothing to prune.
    to_prune = [thread_id for thread_id, count in expired if count > 1]
    if to_prune:
        await saver.aprune(to_prune, strategy="keep_latest")
    return len(to_prune)


class _Shared:
    """One open saver per store directory in this process, shared by every entry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.savers: dict[str, tuple[LogSaver, int]] = {}

    def acquire(self, path: str, make: Any) -> LogSaver:
        key = os.path.realpath(path)
        with self.lock:
            saver, users = self.savers.get(key, (None, 0))
            if saver is None:
                saver = make()
            self.savers[key] = (saver, users + 1)
            return saver

    def release(self, path: str) -> None:
        key = os.path.realpath(path)
        with self.lock:
            saver, users = self.savers[key]
            if users > 1:
                self.savers[key] = (saver, users - 1)
                return
            del self.savers[key]
        saver.close()


_SHARED = _Shared()


def _options(environ: Mapping[str, str]) -> dict[str, Any]:
    raw = environ.get("LOGSAVER_OPTIONS")
    if not raw:
        return {}
    options = json.loads(raw)
    if not isinstance(options, dict):
        raise InvalidArgumentError(f"LOGSAVER_OPTIONS must be a JSON object, not {raw!r}")
    return options


@contextlib.asynccontextmanager
async def checkpointer() -> AsyncIterator[LogSaver]:
    """The factory ``langgraph.json`` names: yields the process's shared LogSaver and, when a
    thread TTL is configured, sweeps expired threads in the background while it is entered."""
    environ = os.environ
    path = environ.get("LOGSAVER_PATH") or DEFAULT_PATH
    durability = environ.get("LOGSAVER_DURABILITY") or "sync"
    options = _options(environ)
    ttl = ThreadTTL.from_environment(environ)
    saver = _SHARED.acquire(path, lambda: LogSaver(path, durability=durability, **options))
    sweeper = None
    if ttl is not None and ttl.default_ttl_minutes is not None:

        async def run_sweeps() -> None:
            while True:
                try:
                    swept = await sweep(saver, ttl)
                    if swept:
                        logger.info("thread TTL: %s %d expired threads", ttl.strategy, swept)
                except Exception:  # a failed sweep is retried at the next interval
                    logger.exception("thread TTL sweep failed")
                await asyncio.sleep(ttl.sweep_interval_minutes * 60.0)

        sweeper = asyncio.get_running_loop().create_task(run_sweeps())
    try:
        yield saver
    finally:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        _SHARED.release(path)


__all__ = ["checkpointer", "ThreadTTL", "sweep", "expired_threads", "checkpoint_time"]
