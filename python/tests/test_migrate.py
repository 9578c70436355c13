"""Migration between checkpointers: LogSaver <-> SqliteSaver, and LogSaver <-> PostgresSaver on
a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from logsaver import LogSaver, migrate


def fill(saver) -> None:
    from test_graphs import approval_graph, counter_graph, subgraph_parent

    counter_graph(saver, steps=4).invoke({"log": [], "count": 0}, {"configurable": {"thread_id": "counter"}})
    approval_graph(saver).invoke({"log": [], "count": 0}, {"configurable": {"thread_id": "approval"}})
    graph = subgraph_parent(saver)
    graph.invoke({"log": [], "count": 0}, {"configurable": {"thread_id": "nested"}})
    graph.invoke(Command(resume="yes"), {"configurable": {"thread_id": "nested"}})
    # Writes with task paths, against a checkpoint.
    latest = saver.get_tuple({"configurable": {"thread_id": "counter"}})
    saver.put_writes(latest.config, [("log", ["extra"]), ("__error__", "boom")], "task-x", "~path|x")


def content(saver) -> list:
    rows = []
    for t in saver.list(None):
        c = t.checkpoint
        rows.append(
            (
                t.config["configurable"]["thread_id"],
                t.config["configurable"]["checkpoint_ns"],
                c["id"],
                t.parent_config["configurable"]["checkpoint_id"] if t.parent_config else None,
                c["channel_values"],
                {k: str(v) for k, v in c["channel_versions"].items()},
                {n: {k: str(v) for k, v in vs.items()} for n, vs in c["versions_seen"].items()},
                {k: v for k, v in t.metadata.items()},
                sorted(t.pending_writes, key=repr),
            )
        )
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def task_paths(saver: LogSaver) -> dict:
    out = {}
    for t in saver.list(None):
        cfg = t.config["configurable"]
        raw = saver._store.get_tuple(cfg["thread_id"], cfg["checkpoint_ns"], cfg["checkpoint_id"])
        out[(cfg["thread_id"], cfg["checkpoint_id"])] = sorted((w[0], w[3]) for w in raw.pending_writes)
    return out


def test_logsaver_to_sqlite_and_back(tmp_path):
    with LogSaver(tmp_path / "a") as a, SqliteSaver.from_conn_string(str(tmp_path / "b.db")) as b, LogSaver(tmp_path / "c") as c:
        fill(a)
        counts = migrate(a, b)
        assert counts["threads"] == 3 and counts["checkpoints"] == len(list(a.list(None)))
        assert content(b) == content(a)
        migrate(b, c)
        assert content(c) == content(a)
        seen = []
        migrate(a, LogSaver(tmp_path / "d"), thread_ids=["approval"], progress=lambda d, t: seen.append((d, t)))
        assert seen and seen[-1][0] == seen[-1][1]


def test_logsaver_to_postgres_and_back(tmp_path, postgres_url):
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(postgres_url) as pg, LogSaver(tmp_path / "a") as a, LogSaver(tmp_path / "c") as c:
        pg.setup()
        fill(a)
        migrate(a, pg)
        assert content(pg) == content(a)
        migrate(pg, c)
        assert content(c) == content(a)
        assert task_paths(c) == task_paths(a), "task paths survive the trip through PostgreSQL"
        # Postgres is a working checkpointer for the migrated threads: resume one there.
        from test_graphs import counter_graph

        state = counter_graph(pg, steps=4).get_state({"configurable": {"thread_id": "counter"}})
        assert state.values["count"] == 4


def test_command_line_migrate(tmp_path):
    with LogSaver(tmp_path / "src") as src:
        fill(src)
        expected = content(src)
    result = subprocess.run(
        [sys.executable, "-m", "logsaver", "migrate", f"logsaver:{tmp_path / 'src'}", f"sqlite:{tmp_path / 'out.db'}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "migrated 3 threads" in result.stdout
    with SqliteSaver.from_conn_string(str(tmp_path / "out.db")) as out:
        assert content(out) == expected
