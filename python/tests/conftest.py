"""Shared fixtures: a fresh store directory per test."""

from __future__ import annotations

import pytest

from logsaver import LogSaver


@pytest.fixture
def saver(tmp_path):
    with LogSaver(tmp_path / "store") as s:
        yield s
