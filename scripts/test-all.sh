#!/usr/bin/env bash
# Every test logsaver has, from a fresh clone: installs what it needs, then runs
#   1. the formatting check and the lint gate (clippy, -D warnings, both crates),
#   2. the Rust tests (unit, integration, doc; all features; benches compiled and smoke-run),
#   3. the Python binding, built with maturin into .venv, and its pytest suite (LangGraph's
#      conformance suite, real graphs, cross-process tests, migration to and from SQLite and
#      a real PostgreSQL server, which it installs with apt-get and starts on loopback),
#   4. every fuzz target for FUZZ_SECONDS (default 60) each, starting from the committed corpus
#      (cargo-fuzz is installed if missing; libFuzzer needs RUSTC_BOOTSTRAP=1 on stable).
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

step "lints (clippy -D warnings: the engine with all features and with defaults, the Python crate)"
cargo clippy --all-targets --all-features -- -D warnings
cargo clippy --all-targets -- -D warnings
cargo clippy -p logsaver-python --all-targets -- -D warnings

step "plain cargo test (what a Rust user runs first: default features, debug build, overflow checks on)"
cargo test --quiet

step "rust tests (release, all features)"
cargo test --release --all-features --all-targets
cargo test --release --all-features --doc

step "system packages (PostgreSQL for the migration tests)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y postgresql
fi

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

step "python wheel ships its type information"
(cd python && VIRTUAL_ENV="$root/.venv" PATH="$root/.venv/bin:$PATH" maturin build --release --quiet -o "$root/target/wheels-check")
wheel=$(ls -t "$root"/target/wheels-check/logsaver-*.whl | head -n 1)
"$root/.venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for wanted in ("logsaver/py.typed", "logsaver/_native.pyi"):
    assert wanted in names, f"{wanted} missing from {sys.argv[1]}: {names}"
print("wheel ships py.typed and _native.pyi")
PY

step "python tests"
(cd python && "$root/.venv/bin/python" -m pytest -q)

step "python benchmark, quick pass (so it cannot rot)"
"$root/.venv/bin/python" benches/langgraph_bench.py --quick

step "fuzz smoke (${FUZZ_SECONDS:-60} s per target)"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
for target in decode recovery model; do
    # New inputs go to a scratch directory, so the committed corpus only changes on purpose.
    scratch=$(mktemp -d)
    log="$scratch.log"
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    echo "$target: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions, no failure"
    rm -rf "$scratch" "$log"
done

step "done"
