#!/usr/bin/env bash
# Every test logsaver has, from a fresh clone: installs what it needs, then runs the Rust tests
# (unit, integration, doc; all features), the formatting check, and builds the benches.
# CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "formatting"
cargo fmt --all -- --check

step "rust tests (release, all features)"
cargo test --release --all-features --all-targets
cargo test --release --all-features --doc

step "done"
