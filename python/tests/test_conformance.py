"""LangGraph's checkpointer conformance suite: every capability must be detected and pass."""

from __future__ import annotations

import tempfile

from langgraph.checkpoint.conformance import checkpointer_test, validate

from logsaver import LogSaver

ALL_CAPABILITIES = {
    "put",
    "put_writes",
    "get_tuple",
    "list",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
}


@checkpointer_test(name="LogSaver")
async def logsaver_checkpointer():
    with tempfile.TemporaryDirectory() as tmp, LogSaver(tmp) as saver:
        yield saver


@checkpointer_test(name="LogSaver(flush)")
async def logsaver_flush_checkpointer():
    with tempfile.TemporaryDirectory() as tmp, LogSaver(tmp, durability="flush") as saver:
        yield saver


def _check(report) -> None:
    report.print_report()
    results = report.to_dict()["results"]
    assert set(results) >= ALL_CAPABILITIES, results.keys()
    for name in ALL_CAPABILITIES:
        result = results[name]
        assert result["detected"], f"{name} not detected"
        assert result["passed"] is True, f"{name}: {result['failures']}"
    total = sum(r["tests_passed"] for r in results.values())
    assert total >= 81, total
    assert report.conformance_level() == "FULL"


async def test_conformance_all_capabilities():
    _check(await validate(logsaver_checkpointer))


async def test_conformance_flush_mode():
    _check(await validate(logsaver_flush_checkpointer))
