#!/usr/bin/env bash
# Instructions per forwarded packet under valgrind --tool=callgrind, next to
# the floor's (SRTP-protect and send one packet), for the product and the
# single-socket prototype: a figure that does not move with the neighbours.
#
#     scripts/bench-instructions.sh [VIEWERS=20] [WINDOW=5] [STREAM=light] [CLIENTS=light]
#
# Each server runs under callgrind (about 50× slower), so the light stream
# is the default: the server must keep up for the figure to mean the
# steady state. Prints the table; the callgrind outputs (for
# callgrind_annotate) and target/bench/instructions.jsonl are kept. Light
# viewers by default: they count a packet as it arrives, where counting
# viewers add their count to the totals every 20 ms, which would blur the
# window's two ends.
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${1:-20}
window=${2:-5}
stream=${3:-light}
clients=${4:-light}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
mkdir -p target/bench
rm -rf target/bench/callgrind
cargo bench -j 2 --bench room -- --viewers "$viewers" --window "$window" --stream "$stream" --clients "$clients" \
	--single-socket --no-floor --callgrind --json target/bench/instructions.jsonl
