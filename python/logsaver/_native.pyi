"""Type stubs of ``logsaver._native``, the Rust store behind :class:`logsaver.LogSaver`.

``put``, ``put_writes`` and ``read_tuple`` take LangGraph's own arguments and the serializer's
``dumps_typed``/``loads_typed``. Elsewhere values cross the boundary serialized: a blob is
``(type_tag, bytes)`` as LangGraph's serializer produced it, or ``None`` for the ``empty``
sentinel; ``StoredCheckpoint`` carries metadata as JSON text.
"""

from collections.abc import Callable, Iterator, Sequence
from os import PathLike
from typing import Any, final

__version__: str

def checkpoint_metadata(config: Any, metadata: Any) -> dict[str, Any] | None:
    """LangGraph's ``get_checkpoint_metadata(config, metadata)`` as ``Store.put`` computes it
    natively, or None for a shape ``put`` leaves to LangGraph's own function."""

Version = str | int | float
Blob = tuple[str, bytes]
# (task_id, channel, (type_tag, bytes), task_path)
PendingWrite = tuple[str, str, Blob, str]

@final
class StoredCheckpoint:
    """One stored checkpoint with its values still serialized."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_id: str | None
    v: int
    ts: str
    channel_values: dict[str, Blob]
    channel_versions: dict[str, Version]
    versions_seen: dict[str, dict[str, Version]]
    updated_channels: list[str] | None
    metadata_json: str
    pending_writes: list[PendingWrite]

@final
class Store:
    """An open store directory (see ``LogSaver`` for the options)."""

    def __init__(
        self,
        path: str | PathLike[str],
        durability: str = "sync",
        *,
        segment_size: int | None = None,
        preallocate: bool | None = None,
        recovery: str | None = None,
        max_value_bytes: int | None = None,
        buffer_bytes: int | None = None,
        auto_compaction: bool = True,
        compaction_garbage_ratio: float | None = None,
        compaction_min_garbage_bytes: int | None = None,
        compaction_interval_seconds: float | None = None,
        keep_last: int | None = None,
        max_age_seconds: float | None = None,
        retention_interval_seconds: float | None = None,
        metrics_interval_seconds: float | None = None,
        read_only: bool = False,
        deltas: bool | None = None,
        max_chain: int | None = None,
        compression_level: int | None = None,
        compress: bool | None = None,
        value_cache_bytes: int | None = None,
    ) -> None: ...
    def get_tuple(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None = None
    ) -> StoredCheckpoint | None: ...
    def list(
        self,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        filter_json: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[StoredCheckpoint]: ...
    def put(
        self,
        config: dict[str, Any],
        checkpoint: dict[str, Any],
        metadata: dict[str, Any],
        new_versions: dict[str, Version],
        dumps: Callable[[Any], tuple[str, bytes]],
    ) -> dict[str, Any]:
        """LangGraph's put in one call: config checked, metadata merged by
        get_checkpoint_metadata, new values serialized with ``dumps``; returns the new config."""
    def put_writes(
        self,
        config: dict[str, Any],
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
        dumps: Callable[[Any], tuple[str, bytes]],
    ) -> None: ...
    def delete_thread(self, thread_id: str) -> None: ...
    def delete_for_runs(self, run_ids: list[str]) -> None: ...
    def copy_thread(self, source: str, target: str) -> None: ...
    def prune(self, thread_ids: list[str], strategy: str) -> None: ...
    def get_delta_channel_history(
        self, config: dict[str, Any], channels: list[str]
    ) -> dict[str, tuple[list[PendingWrite], Blob | None]]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def compact(self) -> dict[str, Any]: ...
    def apply_retention(self) -> dict[str, int]: ...
    def space(self) -> dict[str, Any]: ...
    def value_space(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, int]: ...
    def read_tuple(self, config: dict[str, Any], loads: Callable[[tuple[str, bytes]], Any]) -> Any:
        """LangGraph's get_tuple in one call: a CheckpointTuple or None."""
    def read_list(
        self,
        thread_id: str | None,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        filter_json: str | None,
        before: str | None,
        limit: int | None,
        loads: Any,
    ) -> Iterator[Any]: ...
    def backup(self, dest: str | PathLike[str]) -> dict[str, Any]: ...
    def metrics_json(self) -> str: ...
    def threads(self) -> list[tuple[str, int, str | None]]: ...
