"""Real LangGraph graphs on LogSaver: interrupts, time travel, subgraphs, durability modes,
async graphs, encryption."""

from __future__ import annotations

import operator
import threading
from typing import Annotated, TypedDict

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from logsaver import LogSaver


class State(TypedDict):
    log: Annotated[list[str], operator.add]
    count: int


def counter_graph(checkpointer, steps: int = 3):
    """A loop of `steps` node runs, each appending to the log."""

    def work(state: State) -> dict:
        return {"log": [f"step {state['count']}"], "count": state["count"] + 1}

    def route(state: State) -> str:
        return END if state["count"] >= steps else "work"

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_conditional_edges("work", route)
    return builder.compile(checkpointer=checkpointer)


def approval_graph(checkpointer):
    def draft(state: State) -> dict:
        return {"log": ["drafted"], "count": state["count"] + 1}

    def approve(state: State) -> dict:
        answer = interrupt({"question": "approve the draft?", "count": state["count"]})
        return {"log": [f"approved: {answer}"], "count": state["count"] + 1}

    builder = StateGraph(State)
    builder.add_node("draft", draft)
    builder.add_node("approve", approve)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=checkpointer)


def config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


def test_state_persists_and_survives_reopen(tmp_path):
    with LogSaver(tmp_path / "s") as saver:
        graph = counter_graph(saver)
        assert graph.invoke({"log": [], "count": 0}, config("t1"))["count"] == 3
        assert isinstance(saver, BaseCheckpointSaver)
    with LogSaver(tmp_path / "s") as saver:
        state = counter_graph(saver).get_state(config("t1"))
        assert state.values == {"log": ["step 0", "step 1", "step 2"], "count": 3}
        assert state.next == ()


def test_interrupt_and_resume(saver):
    graph = approval_graph(saver)
    first = graph.invoke({"log": [], "count": 0}, config("t"))
    assert first["__interrupt__"][0].value == {"question": "approve the draft?", "count": 1}
    paused = graph.get_state(config("t"))
    assert paused.next == ("approve",)
    assert paused.tasks[0].interrupts[0].value["question"] == "approve the draft?"
    done = graph.invoke(Command(resume="yes"), config("t"))
    assert done["log"] == ["drafted", "approved: yes"]
    assert graph.get_state(config("t")).next == ()


def test_time_travel_replay_and_fork(saver):
    graph = counter_graph(saver, steps=4)
    graph.invoke({"log": [], "count": 0}, config("tt"))
    history = list(graph.get_state_history(config("tt")))
    assert [s.values.get("count") for s in history] == [4, 3, 2, 1, 0, None]
    ids = [s.config["configurable"]["checkpoint_id"] for s in history]
    assert ids == sorted(ids, reverse=True)
    for newer, older in zip(history, history[1:]):
        assert newer.parent_config["configurable"]["checkpoint_id"] == older.config["configurable"]["checkpoint_id"]

    # Replay from the checkpoint where count == 2: it runs to the end again, on a new branch.
    at_two = next(s for s in history if s.values.get("count") == 2)
    replayed = graph.invoke(None, at_two.config)
    assert replayed["count"] == 4
    assert replayed["log"] == ["step 0", "step 1", "step 2", "step 3"]

    # Fork: rewrite the state at count == 1 and continue from the fork.
    at_one = next(s for s in history if s.values.get("count") == 1)
    fork_config = graph.update_state(at_one.config, {"count": 3, "log": ["forked"]})
    fork = graph.get_state(fork_config)
    assert fork.parent_config["configurable"]["checkpoint_id"] == at_one.config["configurable"]["checkpoint_id"]
    assert fork.values == {"log": ["step 0", "forked"], "count": 3}
    finished = graph.invoke(None, fork_config)
    assert finished == {"log": ["step 0", "forked", "step 3"], "count": 4}
    assert graph.get_state(config("tt")).values == finished


def subgraph_parent(checkpointer):
    def inner_step(state: State) -> dict:
        answer = interrupt("inner question")
        return {"log": [f"inner got {answer}"], "count": state["count"] + 1}

    inner = StateGraph(State)
    inner.add_node("inner_step", inner_step)
    inner.add_edge(START, "inner_step")
    inner.add_edge("inner_step", END)
    inner_graph = inner.compile()

    def before(state: State) -> dict:
        return {"log": ["outer before"], "count": state["count"] + 1}

    outer = StateGraph(State)
    outer.add_node("before", before)
    outer.add_node("sub", inner_graph)
    outer.add_edge(START, "before")
    outer.add_edge("before", "sub")
    outer.add_edge("sub", END)
    return outer.compile(checkpointer=checkpointer)


def test_subgraphs_keep_their_own_namespaces(saver):
    graph = subgraph_parent(saver)
    graph.invoke({"log": [], "count": 0}, config("sub"))
    state = graph.get_state(config("sub"), subgraphs=True)
    assert state.next == ("sub",)
    inner_state = state.tasks[0].state
    assert inner_state.values["log"] == ["outer before"]
    namespaces = {t.config["configurable"]["checkpoint_ns"] for t in saver.list(config("sub"))}
    assert "" in namespaces and any(ns.startswith("sub:") for ns in namespaces), namespaces
    root_only = {t.config["configurable"]["checkpoint_ns"] for t in saver.list({"configurable": {"thread_id": "sub", "checkpoint_ns": ""}})}
    assert root_only == {""}
    done = graph.invoke(Command(resume="42"), config("sub"))
    reference = subgraph_parent(InMemorySaver())
    reference.invoke({"log": [], "count": 0}, config("sub"))
    assert done == reference.invoke(Command(resume="42"), config("sub"))
    assert done["log"][-1] == "inner got 42"


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
def test_langgraph_durability_modes(tmp_path, durability):
    with LogSaver(tmp_path / durability) as saver:
        graph = counter_graph(saver, steps=3)
        result = graph.invoke({"log": [], "count": 0}, config("d"), durability=durability)
        assert result["count"] == 3
        history = list(graph.get_state_history(config("d")))
        assert history[0].values["count"] == 3
        if durability == "exit":
            assert len(history) == 1, "exit mode saves only the final checkpoint"
        else:
            assert len(history) == 5
    with LogSaver(tmp_path / durability) as saver:
        assert counter_graph(saver).get_state(config("d")).values["count"] == 3


@pytest.mark.parametrize("saver_durability", ["sync", "flush", "none"])
def test_saver_durability_modes_survive_close(tmp_path, saver_durability):
    with LogSaver(tmp_path / "s", durability=saver_durability) as saver:
        counter_graph(saver).invoke({"log": [], "count": 0}, config("m"))
    with LogSaver(tmp_path / "s") as saver:
        assert counter_graph(saver).get_state(config("m")).values["count"] == 3


async def test_async_graph_ainvoke_and_astream(saver):
    async def work(state: State) -> dict:
        return {"log": [f"async {state['count']}"], "count": state["count"] + 1}

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_conditional_edges("work", lambda s: END if s["count"] >= 3 else "work")
    graph = builder.compile(checkpointer=saver)
    result = await graph.ainvoke({"log": [], "count": 0}, config("a1"))
    assert result["count"] == 3
    chunks = [chunk async for chunk in graph.astream({"log": [], "count": 0}, config("a2"), stream_mode="values")]
    assert chunks[-1]["count"] == 3
    state = await graph.aget_state(config("a2"))
    assert state.values["log"] == ["async 0", "async 1", "async 2"]
    history = [s async for s in graph.aget_state_history(config("a1"))]
    assert len(history) == 5


async def test_async_node_calling_a_subgraph_synchronously(saver):
    inner = StateGraph(State)
    inner.add_node("inner", lambda s: {"log": ["inner ran"], "count": s["count"] + 1})
    inner.add_edge(START, "inner")
    inner.add_edge("inner", END)
    inner_graph = inner.compile()

    async def outer_node(state: State) -> dict:
        out = inner_graph.invoke({"log": [], "count": state["count"]})
        return {"log": out["log"], "count": out["count"]}

    outer = StateGraph(State)
    outer.add_node("outer", outer_node)
    outer.add_edge(START, "outer")
    outer.add_edge("outer", END)
    graph = outer.compile(checkpointer=saver)
    result = await graph.ainvoke({"log": [], "count": 0}, config("mix"))
    assert result == {"log": ["inner ran"], "count": 1}
    assert (await graph.aget_state(config("mix"))).values == result


class ThreadNoting(JsonPlusSerializer):
    """LangGraph's serializer, noting which thread each call runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.dumps_threads: list[int] = []
        self.loads_threads: list[int] = []

    def dumps_typed(self, obj):
        self.dumps_threads.append(threading.get_ident())
        return super().dumps_typed(obj)

    def loads_typed(self, data):
        self.loads_threads.append(threading.get_ident())
        return super().loads_typed(data)


@pytest.mark.parametrize("durability", ["sync", "flush", "none"])
async def test_async_writes_run_on_the_loop_unless_they_wait_for_a_sync(tmp_path, durability):
    # "flush"/"none" writes only copy into memory: aput/aput_writes run them on the event loop,
    # as InMemorySaver does (a worker thread's hand-off cost more than the write). "sync" writes
    # wait for an fdatasync and go to a worker thread; reads always do (they may read the disk).
    serde = ThreadNoting()
    loop_thread = threading.get_ident()
    with LogSaver(tmp_path / "s", durability=durability, serde=serde) as saver:
        graph = counter_graph(saver)
        assert (await graph.ainvoke({"log": [], "count": 0}, config("t")))["count"] == 3
        await saver.aget_tuple(config("t"))
        assert serde.dumps_threads and serde.loads_threads
        on_loop = {thread == loop_thread for thread in serde.dumps_threads}
        assert on_loop == ({False} if durability == "sync" else {True})
        assert loop_thread not in serde.loads_threads
    with LogSaver(tmp_path / "s") as reopened:
        assert counter_graph(reopened).get_state(config("t")).values["count"] == 3


def test_encrypted_serializer(tmp_path):
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef0123456789abcdef")
    with LogSaver(tmp_path / "enc") as saver:
        saver.serde = serde  # assigned after construction, as LangGraph's own tests do
        graph = counter_graph(saver)
        graph.invoke({"log": [], "count": 0}, config("secret"))
        assert graph.get_state(config("secret")).values["count"] == 3
    raw = b"".join(p.read_bytes() for p in (tmp_path / "enc").glob("*.seg"))
    assert b"step 1" not in raw, "values must be stored encrypted"
    assert b"msgpack+aes" in raw
    with LogSaver(tmp_path / "enc", serde=serde) as saver:
        assert counter_graph(saver).get_state(config("secret")).values["log"][-1] == "step 2"


def test_with_allowlist_shares_the_store(saver):
    copy = saver.with_allowlist([("builtins", "dict")]) if hasattr(saver, "with_allowlist") else saver
    graph = counter_graph(copy)
    graph.invoke({"log": [], "count": 0}, config("allow"))
    assert counter_graph(saver).get_state(config("allow")).values["count"] == 3


def test_same_history_as_inmemory_saver(saver):
    reference = InMemorySaver()
    for s in (saver, reference):
        approval_graph(s).invoke({"log": [], "count": 0}, config("cmp"))
        approval_graph(s).invoke(Command(resume="ok"), config("cmp"))
    ours = [(t.checkpoint["channel_values"], t.metadata["step"], t.metadata["source"], len(t.pending_writes)) for t in saver.list(config("cmp"))]
    theirs = [(t.checkpoint["channel_values"], t.metadata["step"], t.metadata["source"], len(t.pending_writes)) for t in reference.list(config("cmp"))]
    assert ours == theirs


def test_native_delta_history_matches_the_base_walk(saver):
    graph = counter_graph(saver, steps=4)
    graph.invoke({"log": [], "count": 0}, config("delta"))
    latest = saver.get_tuple(config("delta"))
    channels = ["log", "count", "branch:to:work", "missing"]
    native = saver.get_delta_channel_history(config=latest.config, channels=channels)
    generic = BaseCheckpointSaver.get_delta_channel_history(saver, config=latest.config, channels=channels)
    assert native == generic
    assert saver.get_delta_channel_history(config=latest.config, channels=[]) == {}
