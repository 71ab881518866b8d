#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (each integration test
# runs against SQLite and against PostgreSQL), then the browser tests in
# headless Chromium. Needs PostgreSQL on 127.0.0.1:5432 (or STAFFROOM_TEST_PG),
# python3-aiosmtpd and chromium: `.ci/run` installs and starts them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins
cargo check --benches   # benchmarks are run by hand (docs/BENCHMARKS.md), but must keep compiling
cargo test --lib --bins --tests -- --test-threads=4

if [ -d tests/browser ]; then
  (cd tests/browser && { [ -d node_modules ] || npm ci --no-audit --no-fund; })
  STAFFROOM_BIN="$PWD/target/debug/staffroom" node --test --test-concurrency=1 tests/browser/*.test.mjs
  # The live room with real media: in a network namespace with only loopback,
  # so WebRTC can only use 127.0.0.1 (the server starts inside too, on SQLite).
  media() { unshare -n sh -c "ip link set lo up && STAFFROOM_BIN=\"$PWD/target/debug/staffroom\" node --test --test-concurrency=1 $*"; }
  media tests/browser/media/room.test.mjs
  media tests/browser/media/replay.test.mjs
  media tests/browser/media/breakouts.test.mjs
  media tests/browser/media/record.test.mjs
fi
