#!/usr/bin/env bash
# The media benchmark in one command: the SRTP-send floor; Staffroom and
# Janus 1.1.2 (Debian package, installed if missing) and the single-socket
# prototype (benches/support/single_socket.rs) side by side, each with
# one presenter (720p-like stream) and N viewers from the same generator, and
# their ratios; a join storm on Staffroom; JSON lines and a chart.
#
#     scripts/bench-media.sh [VIEWERS=50,200,500] [RUNS=3] [STORM=500] [WITHIN=10]
#
# Writes target/bench/room.jsonl, room.txt, room.png and room-medians.md.
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${1:-50,200,500}
runs=${2:-3}
storm=${3:-500}
within=${4:-10}
out=target/bench
mkdir -p "$out"

# Janus: install if missing; the bench starts it with scripts/janus-config.sh.
if ! command -v janus >/dev/null; then
	if [ "$(id -u)" = 0 ]; then apt-get install -y janus; else sudo apt-get install -y janus; fi
fi

# The floor, both servers, the storm.
cargo bench --bench room -- --viewers "$viewers" --runs "$runs" --window 10 --janus --single-socket --storm "$storm" --within "$within" \
	--json "$out/room.jsonl" | tee "$out/room.txt"

# The chart, with matplotlib from PyPI in a private virtualenv.
if [ ! -x "$out/venv/bin/python" ]; then
	python3 -m venv "$out/venv"
	"$out/venv/bin/pip" install -q matplotlib
fi
"$out/venv/bin/python" scripts/bench-chart.py "$out/room.png" "$out/room.jsonl" | tee "$out/room-medians.md"
