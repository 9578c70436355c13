"""Live operations: a read-only LogSaver beside a writer in another process (through its
compactions and a kill -9), online backup during writes, metrics, and the LangGraph server
factory loaded the way the server loads it."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver

from logsaver import LogSaver, StoreReadOnlyError

HERE = os.path.dirname(__file__)

# A LangGraph graph in its own process: one thread per run, small segments, compaction every
# 20 ms; prints each thread id once its run has returned (every checkpoint of it acknowledged).
WRITER = textwrap.dedent(
    """
    import sys, threading, time
    sys.path.insert(0, {here!r})
    from test_graphs import counter_graph
    from logsaver import LogSaver

    saver = LogSaver({path!r}, durability="flush", segment_size=16384, auto_compaction=False)
    def compact():
        while True:
            time.sleep(0.02)
            saver.compact()
    threading.Thread(target=compact, daemon=True).start()
    graph = counter_graph(saver, steps=4)
    for n in range(100000):
        graph.invoke({{"log": [], "count": 0}}, {{"configurable": {{"thread_id": f"run-{{n}}"}}}})
        print(f"DONE run-{{n}}", flush=True)
    """
)


def _follow(child, done: list[str]) -> threading.Thread:
    def read() -> None:
        for line in child.stdout:
            if line.endswith("\n") and line.startswith("DONE "):
                done.append(line.split()[1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _expected(thread_id: str) -> dict:
    return {"log": [f"step {i}" for i in range(4)], "count": 4}


def test_a_read_only_saver_follows_a_graph_in_another_process_through_compaction_and_kill_9(tmp_path):
    from test_graphs import counter_graph

    path = str(tmp_path / "store")
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(here=HERE, path=path)], stdout=subprocess.PIPE, text=True
    )
    done: list[str] = []
    reader_thread = _follow(child, done)
    try:
        _wait(lambda: len(done) >= 5, "the writer's first runs")
        reader = LogSaver(path, read_only=True)
        graph = counter_graph(reader, steps=4)
        checked = 0
        backup = None
        started = time.monotonic()
        while time.monotonic() - started < 2.0:
            finished = list(done)
            for thread_id in finished[-5:]:
                state = graph.get_state({"configurable": {"thread_id": thread_id}})
                assert state.values == _expected(thread_id), thread_id
                checked += 1
            if backup is None and time.monotonic() - started > 1.0:
                backup = (str(tmp_path / "backup"), list(done))
                reader.backup(backup[0])
        with pytest.raises(StoreReadOnlyError):
            graph.invoke({"log": [], "count": 0}, {"configurable": {"thread_id": "not-allowed"}})
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    reader_thread.join(timeout=5)
    assert checked > 20

    # The writer died mid-work: the reader carries on and still sees every finished run.
    for thread_id in done:
        assert graph.get_state({"configurable": {"thread_id": thread_id}}).values == _expected(thread_id)
    # A new writer recovers and writes; the reader follows it.
    with LogSaver(path) as writer:
        counter_graph(writer, steps=4).invoke({"log": [], "count": 0}, {"configurable": {"thread_id": "after"}})
        assert graph.get_state({"configurable": {"thread_id": "after"}}).values == _expected("after")
    reader.close()

    # The backup taken beside the writer holds every run finished before it began.
    dest, before = backup
    with LogSaver(dest, read_only=True) as restored:
        restored_graph = counter_graph(restored, steps=4)
        for thread_id in before:
            assert restored_graph.get_state({"configurable": {"thread_id": thread_id}}).values == _expected(thread_id)
    # It has no index snapshot: opening it as a writer replays (and checks) every frame.
    with LogSaver(dest) as writer:
        assert writer.stats()["checkpoints"] >= 5 * len(before)


def test_backup_and_metrics_from_the_writer(tmp_path):
    from test_graphs import counter_graph

    with LogSaver(tmp_path / "store", durability="flush") as saver:
        graph = counter_graph(saver, steps=3)
        for n in range(10):
            graph.invoke({"log": [], "count": 0}, {"configurable": {"thread_id": f"t{n}"}})
        saver.get_tuple({"configurable": {"thread_id": "t0"}})
        copied = saver.backup(tmp_path / "copy")
        assert copied["segments"] >= 1 and copied["bytes"] > 0
        metrics = saver.metrics()
        ops = {op["op"]: op for op in metrics["operations"]}
        assert ops["put"]["latency_us"]["count"] == 10 * 5  # input + 3 steps + the end, per run
        assert ops["put_writes"]["latency_us"]["count"] > 0
        assert ops["get_tuple"]["latency_us"]["count"] >= 11 and ops["backup"]["latency_us"]["count"] == 1
        assert 0 < ops["put"]["latency_us"]["p50"] <= ops["put"]["latency_us"]["max"]
        assert metrics["writer"] and metrics["bytes_written"] > 0 and metrics["commits"] > 0
    with LogSaver(tmp_path / "copy") as restored:
        assert counter_graph(restored, steps=3).get_state({"configurable": {"thread_id": "t9"}}).values["count"] == 3
    # Closed, the writer left its metrics where `logsaver stats` in another process finds them.
    with open(tmp_path / "store" / "METRICS.json") as left:
        assert json.load(left)["operations"][0]["latency_us"]["count"] == 50


def _load_like_the_server(spec: str):
    """langgraph_api's loader: `path/file.py:fn` from a file, else `module.fn` by import."""
    if "/" in spec or ".py:" in spec:
        raise AssertionError("use the dotted form")
    module_name, function = spec.rsplit(".", 1)
    return importlib.import_module(module_name).__dict__[function]


REQUIRED_BY_THE_SERVER = ("aput", "aput_writes", "aget_tuple", "aget", "alist")


def test_the_server_factory_loads_shares_one_saver_and_sweeps_expired_threads(tmp_path, monkeypatch):
    from test_graphs import counter_graph

    from logsaver import server

    monkeypatch.setenv("LOGSAVER_PATH", str(tmp_path / "server-store"))
    monkeypatch.setenv("LOGSAVER_DURABILITY", "flush")
    monkeypatch.setenv("LOGSAVER_OPTIONS", json.dumps({"segment_size": 1 << 20}))
    monkeypatch.setenv(
        "LANGGRAPH_CHECKPOINTER",
        json.dumps({"path": "logsaver.server.checkpointer", "ttl": {"strategy": "keep_latest", "default_ttl": 60}}),
    )
    factory = _load_like_the_server("logsaver.server.checkpointer")
    entered = factory()
    assert hasattr(entered, "__aenter__")

    async def run() -> None:
        async with entered as saver:
            assert isinstance(saver, LogSaver)
            for name in REQUIRED_BY_THE_SERVER:
                assert getattr(type(saver), name) is not getattr(BaseCheckpointSaver, name), name
            # The server enters the factory once per OS thread: one saver (one writer) for all.
            other = []
            thread = threading.Thread(target=lambda: other.append(asyncio.run(_enter_and_peek(factory))))
            thread.start()
            thread.join()
            assert other == [id(saver)]
            graph = counter_graph(saver, steps=3)
            for n in range(3):
                await graph.ainvoke({"log": [], "count": 0}, {"configurable": {"thread_id": f"t{n}"}})
            assert (await saver.aget({"configurable": {"thread_id": "t0"}}))["id"]
            ttl = server.ThreadTTL.from_environment()
            assert ttl == server.ThreadTTL(strategy="keep_latest", default_ttl_minutes=60.0)
            # Nothing is an hour old yet; two hours from now everything is.
            assert await server.sweep(saver, ttl) == 0
            assert await server.sweep(saver, ttl, now=time.time() + 7200) == 3
            for n in range(3):
                assert len([c async for c in saver.alist({"configurable": {"thread_id": f"t{n}"}})]) == 1
            deleting = server.ThreadTTL(strategy="delete", default_ttl_minutes=60.0, sweep_limit=2)
            assert await server.sweep(saver, deleting, now=time.time() + 7200) == 2
            assert len(saver.threads()) == 1
        # Closed when the last entry left: the store can be opened again.
        with LogSaver(tmp_path / "server-store") as reopened:
            assert len(reopened.threads()) == 1

    asyncio.run(run())


async def _enter_and_peek(factory) -> int:
    async with factory() as saver:
        return id(saver)


def test_ttl_settings_parse_like_the_server(monkeypatch):
    from logsaver import InvalidArgumentError
    from logsaver.server import ThreadTTL, checkpoint_time

    assert ThreadTTL.from_config(None) is None
    assert ThreadTTL.from_config({"strategy": "delete"}) is None  # no default_ttl: nothing expires
    assert ThreadTTL.from_config("30") == ThreadTTL(default_ttl_minutes=30.0)
    assert ThreadTTL.from_config({"default_ttl": 5, "sweep_interval_minutes": 1, "sweep_limit": 7}) == ThreadTTL(
        default_ttl_minutes=5.0, sweep_interval_minutes=1.0, sweep_limit=7
    )
    with pytest.raises(InvalidArgumentError):
        ThreadTTL.from_config({"strategy": "archive", "default_ttl": 5})
    monkeypatch.setenv("LANGGRAPH_THREAD_TTL", "15")
    monkeypatch.setenv("LANGGRAPH_CHECKPOINTER", json.dumps({"ttl": {"default_ttl": 99}}))
    assert ThreadTTL.from_environment() == ThreadTTL(default_ttl_minutes=15.0)  # the variable wins
    from langgraph.checkpoint.base.id import uuid6

    assert abs(checkpoint_time(str(uuid6())) - time.time()) < 5
    assert checkpoint_time("not-a-uuid") is None
