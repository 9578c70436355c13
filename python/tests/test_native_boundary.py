"""The typed boundary between Python and the Rust store: named fields, one version, stubs."""

from __future__ import annotations

import pathlib
import re

import pytest

import logsaver
from logsaver import LogSaver, StorePoisonedError, _native

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_native_module_returns_named_checkpoints(tmp_path: pathlib.Path) -> None:
    saver = LogSaver(tmp_path / "store")
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
    checkpoint = {
        "v": 4,
        "id": "1f0c1d2e-3a4b-6c5d-8e7f-0123456789ab",
        "ts": "2026-11-22T00:00:00+00:00",
        "channel_values": {"messages": ["hi"]},
        "channel_versions": {"messages": 1},
        "versions_seen": {"agent": {"messages": 1}},
        "updated_channels": ["messages"],
    }
    saved = saver.put(config, checkpoint, {"source": "loop", "step": 1}, {"messages": 1})
    saver.put_writes(saved, [("messages", "w")], "task-1")
    raw = saver._store.get_tuple("t", "", None)
    assert isinstance(raw, _native.StoredCheckpoint)
    assert (raw.thread_id, raw.checkpoint_ns, raw.checkpoint_id, raw.parent_id) == ("t", "", checkpoint["id"], None)
    assert raw.v == 4 and raw.ts == checkpoint["ts"]
    assert raw.channel_versions == {"messages": 1}
    assert raw.versions_seen == {"agent": {"messages": 1}}
    assert raw.updated_channels == ["messages"]
    assert set(raw.channel_values) == {"messages"}
    type_tag, payload = raw.channel_values["messages"]
    assert isinstance(type_tag, str) and isinstance(payload, bytes)
    [(task_id, channel, (write_tag, write_bytes), task_path)] = raw.pending_writes
    assert (task_id, channel, task_path) == ("task-1", "messages", "")
    assert isinstance(write_tag, str) and isinstance(write_bytes, bytes)
    assert '"step": 1' in raw.metadata_json or '"step":1' in raw.metadata_json
    # Read-only: the fields are values, not a mutable record.
    try:
        raw.v = 5  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("StoredCheckpoint fields must be read-only")
    assert [t.checkpoint_id for t in saver._store.list("t")] == [checkpoint["id"]]
    saver.close()


def test_one_source_for_the_version() -> None:
    cargo = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'\[workspace\.package\]\s*version\s*=\s*"([^"]+)"', cargo)
    assert match, "the workspace version is in Cargo.toml"
    assert logsaver.__version__ == _native.__version__ == match.group(1)
    pyproject = (ROOT / "python" / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject


def test_the_package_ships_type_information() -> None:
    package = pathlib.Path(logsaver.__file__).parent
    assert (package / "py.typed").exists()
    stub = (package / "_native.pyi").read_text()
    for name in ("class StoredCheckpoint", "class Store", "__version__"):
        assert name in stub
    # Every method of the native Store is declared, with the parameters it really takes (the
    # stub went stale once when put changed its arguments).
    import ast
    import inspect

    from logsaver import _native

    tree = ast.parse(stub)
    store = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Store")
    declared = {
        f.name: [a.arg for a in f.args.args + f.args.kwonlyargs][1:]
        for f in store.body
        if isinstance(f, ast.FunctionDef) and f.name != "__init__"
    }
    methods = [name for name in dir(_native.Store) if not name.startswith("_")]
    assert sorted(declared) == sorted(methods)
    for name in methods:
        real = [p for p in inspect.signature(getattr(_native.Store, name)).parameters if p != "self"]
        assert declared[name] == real, name


def test_a_poisoned_store_error_carries_the_io_kind() -> None:
    error = StorePoisonedError("store is poisoned by an earlier failure: fdatasync: No space left", "StorageFull")
    assert error.kind == "StorageFull"
    assert StorePoisonedError("message").kind is None


def test_metadata_comes_back_as_json_would_carry_it(saver):
    """put converts metadata natively for plain JSON types and through json.dumps otherwise;
    either way get_tuple returns what a JSON round trip gives."""
    import json as _json

    from langgraph.checkpoint.base import empty_checkpoint

    metadata = {
        "source": "loop",
        "step": -3,
        "big": 2**63 + 5,
        "ratio": 0.25,
        "ok": True,
        "none": None,
        "pair": (1, "two"),
        "nested": {"ünïcode": ["é", {"deep": [None, False]}]},
        "int_keys": {1: "one", 2: "two"},
    }
    config = saver.put({"configurable": {"thread_id": "m", "checkpoint_ns": ""}}, empty_checkpoint(), metadata, {})
    stored = saver.get_tuple(config).metadata
    expected = _json.loads(_json.dumps(metadata, ensure_ascii=False))
    assert stored == expected
    assert isinstance(stored["step"], int) and isinstance(stored["ratio"], float) and stored["ok"] is True

    class Opaque:
        pass

    import pytest as _pytest

    with _pytest.raises(TypeError):
        saver.put({"configurable": {"thread_id": "m", "checkpoint_ns": ""}}, empty_checkpoint(), {"x": Opaque()}, {})


def test_cyclic_or_deep_metadata_is_refused_at_put_and_breaks_nothing(saver):
    from langgraph.checkpoint.base import empty_checkpoint

    import pytest as _pytest

    config = {"configurable": {"thread_id": "deep", "checkpoint_ns": ""}}
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with _pytest.raises(ValueError):  # json.dumps: circular reference
        saver.put(config, empty_checkpoint(), {"m": cyclic}, {})
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["d"] = {}
        node = node["d"]
    with _pytest.raises(Exception) as refused:  # parsed back: more than 128 levels
        saver.put(config, empty_checkpoint(), {"m": deep}, {})
    assert "metadata" in str(refused.value) or "recursion" in str(refused.value).lower()
    # json.dumps writes a 401-digit integer exactly; reads could not parse it back.
    with _pytest.raises(Exception, match="metadata"):
        saver.put(config, empty_checkpoint(), {"n": 10**400}, {})
    # Nothing was stored: list still works for every query.
    assert list(saver.list(None)) == []
    ok = saver.put(config, empty_checkpoint(), {"fine": {"a": [1, 2]}}, {})
    assert saver.get_tuple(ok).metadata["fine"] == {"a": [1, 2]}


def test_list_deserializes_a_tuple_only_when_the_caller_reaches_it(saver):
    from langgraph.checkpoint.base import empty_checkpoint

    config = {"configurable": {"thread_id": "lazy", "checkpoint_ns": ""}}
    for n in range(5):
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"n": n}
        checkpoint["channel_versions"] = {"n": n + 1}
        config = saver.put(config, checkpoint, {"step": n}, {"n": n + 1})
    calls = []
    real = saver.serde

    class Counting:
        def dumps_typed(self, value):
            return real.dumps_typed(value)

        def loads_typed(self, data):
            calls.append(data)
            return real.loads_typed(data)

    saver.serde = Counting()
    try:
        newest = next(iter(saver.list({"configurable": {"thread_id": "lazy"}})))
        assert newest.checkpoint["channel_values"] == {"n": 4}
        assert len(calls) == 1  # not five
        assert [t.metadata["step"] for t in saver.list({"configurable": {"thread_id": "lazy"}})] == [4, 3, 2, 1, 0]
    finally:
        saver.serde = real


def test_a_serializer_may_return_any_pair_of_tag_and_bytes_like(tmp_path):
    """The binding serializes values itself now; a serializer returning a list or a bytearray
    (as the Python unpacking it replaced accepted) still works."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    class Loose(JsonPlusSerializer):
        def dumps_typed(self, obj):
            type_tag, data = super().dumps_typed(obj)
            return [type_tag, bytearray(data)]

    from logsaver import LogSaver

    with LogSaver(str(tmp_path / "s"), durability="flush", serde=Loose()) as saver:
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"x": {"a": 1}}
        checkpoint["channel_versions"] = {"x": 1}
        config = saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, checkpoint, {}, {"x": 1})
        saver.put_writes(config, [("y", [1, 2])], "task")
        stored = saver.get_tuple(config)
        assert stored.checkpoint["channel_values"] == {"x": {"a": 1}}
        assert [(c, v) for _, c, v in stored.pending_writes] == [("y", [1, 2])]



def test_put_merges_metadata_exactly_as_langgraph_does(tmp_path: pathlib.Path) -> None:
    """`put` merges the config into the metadata natively for the shapes LangGraph's loop
    passes (dict metadata; config `metadata` a dict or a ChainMap of dicts; str keys) and hands
    any other shape to LangGraph's `get_checkpoint_metadata`: same dict, same key order, same
    value objects, same error."""
    import collections
    import enum
    import random

    from langgraph.checkpoint.base import EXCLUDED_METADATA_KEYS, get_checkpoint_metadata

    class Text(str):
        pass

    class Number(int):
        pass

    class Ratio(float):
        pass

    class Colour(enum.IntEnum):
        RED = 1

    class Mode(enum.StrEnum):
        FAST = "fast"

    class Proxy:
        """What wrapt proxies and Mock(spec=...) do: isinstance sees the wrapped class."""

        def __init__(self, wrapped):
            self.wrapped = wrapped

        @property
        def __class__(self):
            return type(self.wrapped)

        def replace(self, old, new):
            return self.wrapped.replace(old, new)

        def __repr__(self):
            return f"Proxy({self.wrapped!r})"

    rng = random.Random(14)
    keys = ["source", "step", "run_id", "user", "__pregel_x", "_private", "thread_id", "checkpoint_ns", "a", "b", "c"]
    keys += sorted(EXCLUDED_METADATA_KEYS)
    values = ["loop", "nul\x00inside", "\x00", Text("sub"), Text("sub\x00nul"), "", 0, 7, -3, True, False, 1.5,
              float("inf"), None, [1], {"k": 1}, ("t",), b"bytes", "\udc80 lone surrogate", "ü", Number(5),
              Ratio(0.5), Colour.RED, Mode.FAST, Proxy("proxied\x00"), Proxy(3), Proxy([1]), object()]

    def mapping() -> dict:
        return {rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(0, 6))}

    def source():
        shape = rng.randrange(5)
        if shape == 0:
            return mapping()
        if shape == 1:
            return collections.ChainMap(*(mapping() for _ in range(rng.randrange(0, 4))))
        if shape == 2:
            return None
        if shape == 3:
            return {}
        return collections.ChainMap()

    def same(ours, theirs) -> bool:
        # The same objects, except strings both rebuilt (NULs removed, a str subclass made str).
        return ours is theirs or (type(ours) is type(theirs) is str and ours == theirs)

    native_shapes = 0
    for _ in range(3000):
        config = {"tags": [], "recursion_limit": 25}
        for name in ("metadata", "configurable"):
            if rng.random() < 0.9:
                config[name] = source()
        metadata = mapping()
        ours = _native.checkpoint_metadata(config, metadata)
        theirs = get_checkpoint_metadata(config, metadata)
        if ours is None:
            continue
        native_shapes += 1
        assert list(ours) == list(theirs), (config, metadata)
        assert all(a is b for a, b in zip(ours, theirs, strict=True)), "the same key objects"
        assert all(same(ours[k], theirs[k]) for k in ours), (config, metadata, ours, theirs)
    assert native_shapes > 2500
    # Shapes left to LangGraph: its result (or its error) is what put stores.
    for config, metadata in [
        ({"metadata": {1: "int key"}}, {}),  # LangGraph calls 1.startswith: AttributeError
        ({"configurable": {Text("k"): 1}}, {}),  # a key whose __eq__/__hash__ could run code
        ({"metadata": collections.ChainMap({"a": 1}, {Text("a"): 2})}, {}),
        ({}, {Text("k"): 1}),
        ({}, {1: "int key"}),
        ({"metadata": collections.ChainMap({"a": 1}, collections.ChainMap({"b": 2}))}, {}),
        ({"metadata": collections.OrderedDict(a=1)}, {}),
        ({"metadata": {"a": 1}}, collections.OrderedDict(b=2)),
        (collections.OrderedDict(metadata={"a": 1}), {}),
    ]:
        assert _native.checkpoint_metadata(config, metadata) is None, (config, metadata)
    from langgraph.checkpoint.base import empty_checkpoint

    with LogSaver(tmp_path / "store", durability="flush") as saver:
        base = {"thread_id": "t", "checkpoint_ns": ""}
        with pytest.raises(AttributeError):  # as LangGraph's function (and InMemorySaver) raise
            saver.put({"configurable": base, "metadata": {1: "int key"}}, empty_checkpoint(), {}, {})
        nested = collections.ChainMap({"a": "x\x00y"}, collections.ChainMap({"b": 2, "a": 0}))
        for config in ({"configurable": base, "metadata": nested}, {"configurable": {**base, "user": "u\x00"}}):
            saved = saver.put(config, empty_checkpoint(), {"source": "loop", "step": 1}, {})
            expected = get_checkpoint_metadata(config, {"source": "loop", "step": 1})
            assert saver.get_tuple(saved).metadata == expected
