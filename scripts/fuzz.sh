#!/usr/bin/env bash
# Fuzzes the signalling message parser and the recorder's RTP-to-WebM path
# for a bounded time each (not part of CI: run it by hand, see
# docs/fuzzing.md). Usage: scripts/fuzz.sh [seconds per target, default 120]
#
# cargo-fuzz needs nightly compiler features; on the stable toolchain
# RUSTC_BOOTSTRAP=1 lets it use them. Installs cargo-fuzz if it is missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-120}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
# Safe Rust: what we look for is panics, which need no sanitizer (and the
# build is much quicker without one).
for target in signalling_message rtp_to_webm; do
  echo "== $target, ${seconds}s"
  cargo fuzz run -s none "$target" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 2>&1 |
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|Done|SUMMARY|panicked|crash-" || true
done
