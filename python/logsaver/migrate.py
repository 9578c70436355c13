"""Move threads between any two LangGraph checkpointers: LogSaver, SqliteSaver, PostgresSaver,
InMemorySaver, ...

    from logsaver import LogSaver, migrate
    from langgraph.checkpoint.postgres import PostgresSaver

    with LogSaver("./ckpt") as src, PostgresSaver.from_conn_string(url) as dst:
        dst.setup()
        migrate(src, dst)

Every checkpoint keeps its id, parent, metadata and channel values; pending writes keep their
task ids and order, and their task paths when the source records them (LogSaver and
PostgresSaver do; SqliteSaver and InMemorySaver do not, so those arrive with an empty path).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple


def _task_paths(saver: BaseCheckpointSaver, tup: CheckpointTuple) -> dict[str, str]:
    """task_id -> task_path for the pending writes of `tup`, where the saver records them."""
    from logsaver.saver import LogSaver

    configurable = tup.config["configurable"]
    if isinstance(saver, LogSaver):
        raw = saver._store.get_tuple(
            configurable["thread_id"], configurable.get("checkpoint_ns", ""), configurable["checkpoint_id"]
        )
        return {task_id: path for task_id, _channel, _blob, path in (raw.pending_writes if raw else [])}
    cursor = getattr(saver, "_cursor", None)
    if type(saver).__module__.startswith("langgraph.checkpoint.postgres") and cursor is not None:
        # PostgresSaver keeps task_path in checkpoint_writes; read it through its own cursor.
        query = (
            "SELECT DISTINCT task_id, task_path FROM checkpoint_writes "
            "WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id = %s"
        )
        args = (configurable["thread_id"], configurable.get("checkpoint_ns", ""), configurable["checkpoint_id"])
        with cursor() as cur:
            cur.execute(query, args)
            rows = cur.fetchall()
        return {row["task_id"]: row["task_path"] for row in rows}
    return {}


def migrate(
    src: BaseCheckpointSaver,
    dst: BaseCheckpointSaver,
    *,
    thread_ids: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Copy threads (all of them, or `thread_ids`) from `src` to `dst`, every namespace, with
    the same checkpoint ids. Returns counts of threads, checkpoints and writes copied.
    `progress(done, total)` is called after each checkpoint."""
    wanted = None if thread_ids is None else {str(t) for t in thread_ids}
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a collection of thread ids, not a single string")
    by_thread: dict[str, list[CheckpointTuple]] = defaultdict(list)
    for tup in src.list(None):
        thread_id = str(tup.config["configurable"]["thread_id"])
        if wanted is None or thread_id in wanted:
            by_thread[thread_id].append(tup)
    total = sum(len(v) for v in by_thread.values())
    done = checkpoints = writes = 0
    for thread_id in sorted(by_thread):
        # Oldest first within each namespace, so a parent is stored before its children.
        tuples = sorted(by_thread[thread_id], key=lambda t: (t.config["configurable"].get("checkpoint_ns", ""), t.checkpoint["id"]))
        for tup in tuples:
            ns = tup.config["configurable"].get("checkpoint_ns", "")
            checkpoint = dict(tup.checkpoint)
            parent = tup.parent_config["configurable"].get("checkpoint_id") if tup.parent_config else None
            put_config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
            if parent is not None:
                put_config["configurable"]["checkpoint_id"] = parent
            values = checkpoint.get("channel_values", {})
            new_versions = {ch: v for ch, v in checkpoint.get("channel_versions", {}).items() if ch in values}
            stored = dst.put(put_config, checkpoint, dict(tup.metadata), new_versions)
            checkpoints += 1
            if tup.pending_writes:
                paths = _task_paths(src, tup)
                grouped: dict[str, list[tuple[str, Any]]] = defaultdict(list)
                for task_id, channel, value in tup.pending_writes:
                    grouped[task_id].append((channel, value))
                for task_id, items in grouped.items():
                    dst.put_writes(stored, items, task_id, paths.get(task_id, ""))
                    writes += len(items)
            done += 1
            if progress is not None:
                progress(done, total)
    return {"threads": len(by_thread), "checkpoints": checkpoints, "writes": writes}


def _open(spec: str):
    """A saver from "logsaver:PATH", "sqlite:PATH" or "postgres:URL", as a context manager."""
    kind, _, target = spec.partition(":")
    if kind == "logsaver":
        from logsaver.saver import LogSaver

        return LogSaver.from_conn_string(target)
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        return SqliteSaver.from_conn_string(target)
    if kind == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        return PostgresSaver.from_conn_string(target)
    raise SystemExit(f"unknown saver {spec!r}: use logsaver:PATH, sqlite:PATH or postgres:URL")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m logsaver migrate", description="Copy threads between checkpointers.")
    parser.add_argument("source", help="logsaver:PATH, sqlite:PATH or postgres:URL")
    parser.add_argument("target", help="logsaver:PATH, sqlite:PATH or postgres:URL")
    parser.add_argument("--thread", action="append", dest="threads", help="only this thread (repeatable)")
    args = parser.parse_args(argv)
    with _open(args.source) as src, _open(args.target) as dst:
        if hasattr(dst, "setup"):
            dst.setup()

        def show(done: int, total: int) -> None:
            width = 40
            filled = width * done // max(total, 1)
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} checkpoints", end="", file=sys.stderr, flush=True)

        counts = migrate(src, dst, thread_ids=args.threads, progress=show)
    print(file=sys.stderr)
    print(f"migrated {counts['threads']} threads, {counts['checkpoints']} checkpoints, {counts['writes']} writes")
    return 0
