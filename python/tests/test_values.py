"""Values stored as deltas and compressed (issue 11), seen from LangGraph: a long conversation
is stored in linear space and reads back exactly as InMemorySaver holds it, before and after a
reopen; encrypted values and LangGraph's own DeltaChannel work on top; the options are checked."""

from __future__ import annotations

import functools
import os
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.channels import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from logsaver import LogSaver
from logsaver.errors import InvalidArgumentError


class ChatState(TypedDict):
    messages: Annotated[list, add_messages]


def add_messages_batch(state, writes):
    return functools.reduce(add_messages, writes, state if state is not None else [])


class DeltaChatState(TypedDict):
    messages: Annotated[list, DeltaChannel(add_messages_batch, snapshot_frequency=4)]


def chat_graph(saver, state=ChatState):
    """Per turn: the agent calls a tool, the tool answers, the agent replies (message ids fixed,
    so two savers' runs hold equal states)."""

    def agent(s):
        last, n = s["messages"][-1], len(s["messages"])
        if isinstance(last, ToolMessage):
            return {"messages": [AIMessage(content=f"Found it (step {n}): " + "the answer is 42. " * 12, id=f"a{n}")]}
        call = {"name": "search", "args": {"query": f"question {n}"}, "id": f"call_{n}"}
        return {"messages": [AIMessage(content="", tool_calls=[call], id=f"c{n}")]}

    def tools(s):
        call = s["messages"][-1].tool_calls[0]
        content = "result: " + "lorem ipsum dolor sit amet " * 10
        return {"messages": [ToolMessage(content=content, tool_call_id=call["id"], id=f"r{call['id']}")]}

    def route(s):
        last = s["messages"][-1]
        return "tools" if isinstance(last, AIMessage) and last.tool_calls else END

    builder = StateGraph(state)
    builder.add_node("agent", agent)
    builder.add_node("tools", tools)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=saver)


def converse(saver, turns, thread="chat", state=ChatState):
    graph = chat_graph(saver, state)
    config = {"configurable": {"thread_id": thread}}
    for turn in range(turns):
        graph.invoke({"messages": [HumanMessage(content=f"user question {turn}", id=f"h{turn}")]}, config)
    return graph


def history(saver, thread="chat"):
    config = {"configurable": {"thread_id": thread}}
    return [(t.checkpoint["id"], t.checkpoint["channel_values"], t.metadata.get("step")) for t in saver.list(config)]


def directory_bytes(path) -> int:
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def test_a_long_conversation_takes_linear_space_and_reads_back_exactly(tmp_path):
    per_checkpoint = {}
    for turns in (10, 40):
        path = tmp_path / f"chat-{turns}"
        saver, reference = LogSaver(path, durability="flush"), InMemorySaver()
        for s in (saver, reference):
            converse(s, turns)
        # Same checkpoint ids need the same id generator: compare contents in order instead.
        ours, theirs = history(saver), history(reference)
        assert [(v, step) for _, v, step in ours] == [(v, step) for _, v, step in theirs]
        space = saver.value_space()
        assert space["deltas"] > turns, space
        assert space["longest_chain"] <= 64, space
        checkpoints = len(ours)
        saver.close()
        per_checkpoint[turns] = directory_bytes(path) / checkpoints
        # Reopened, the cache is cold: every value is rebuilt through its chain.
        with LogSaver(path) as reopened:
            assert [(v, step) for _, v, step in history(reopened)] == [(v, step) for _, v, step in theirs]
            assert reopened.value_space()["ratio"] > 3
    # Stored whole, 40 turns would cost about 4x what 10 turns cost per checkpoint.
    assert per_checkpoint[40] < 1.5 * per_checkpoint[10], per_checkpoint


def test_encrypted_values_are_stored_whole_and_read_back(tmp_path):
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef0123456789abcdef")
    with LogSaver(tmp_path / "enc", serde=serde) as saver:
        reference = InMemorySaver(serde=serde)
        for s in (saver, reference):
            converse(s, 12)
        assert [(v, step) for _, v, step in history(saver)] == [(v, step) for _, v, step in history(reference)]
        space = saver.value_space()
        # Ciphertext changes everywhere between versions: no delta pays, and none is stored.
        assert space["deltas"] == 0, space
    raw = b"".join(p.read_bytes() for p in (tmp_path / "enc").glob("*.seg"))
    assert b"lorem ipsum" not in raw


def test_langgraph_delta_channel_works_on_top(tmp_path):
    # DeltaChannel stores a sentinel most steps and a growing snapshot every 4 updates; the
    # store's own deltas then apply to those snapshots. State and history must be LangGraph's.
    with LogSaver(tmp_path / "delta", durability="flush") as saver:
        reference = InMemorySaver()
        graphs = [converse(s, 15, state=DeltaChatState) for s in (saver, reference)]
        config = {"configurable": {"thread_id": "chat"}}
        ours, theirs = (g.get_state(config).values["messages"] for g in graphs)
        assert ours == theirs and len(ours) == 60
        ours_history = [s.values["messages"] for s in graphs[0].get_state_history(config)]
        theirs_history = [s.values["messages"] for s in graphs[1].get_state_history(config)]
        assert ours_history == theirs_history


def test_value_options(tmp_path):
    with LogSaver(tmp_path / "plain", compress=False, deltas=False) as saver:
        converse(saver, 5)
        space = saver.value_space()
        assert space["deltas"] == 0 and space["compressed"] == 0, space
    with LogSaver(tmp_path / "short", max_chain=2, value_cache_bytes=0) as saver:
        converse(saver, 8)
        space = saver.value_space()
        assert 0 < space["longest_chain"] <= 2, space
        assert space["cache_budget_bytes"] == 0
    with pytest.raises(InvalidArgumentError):
        LogSaver(tmp_path / "bad", max_chain=100_000)
    with pytest.raises(InvalidArgumentError):
        LogSaver(tmp_path / "bad", compression_level=99)
