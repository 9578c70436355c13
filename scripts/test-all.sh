#!/usr/bin/env bash
# Every test logsaver has, from a fresh clone: installs what it needs, then runs
#   1. the formatting check,
#   2. the Rust tests (unit, integration, doc; all features; benches compiled and smoke-run),
#   3. the Python binding, built with maturin into .venv, and its pytest suite (LangGraph's
#      conformance suite, real graphs, cross-process tests).
# CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version
python3 --version

step "formatting"
cargo fmt --all -- --check

step "rust tests (release, all features)"
cargo test --release --all-features --all-targets
cargo test --release --all-features --doc

step "python environment (.venv)"
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        # Debian's python3 ships venv separately.
        apt-get update && apt-get install -y python3-venv
        python3 -m venv .venv
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r python/requirements-test.txt

step "python binding (maturin develop --release)"
(cd python && VIRTUAL_ENV="$root/.venv" PATH="$root/.venv/bin:$PATH" maturin develop --release --quiet)

step "python tests"
(cd python && "$root/.venv/bin/python" -m pytest -q)

step "done"
