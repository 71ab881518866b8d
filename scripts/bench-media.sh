#!/usr/bin/env bash
# The media benchmark in one command: the SRTP-send floor, Staffroom with one
# presenter (720p-like stream) and N viewers, a join storm, JSON lines and a
# chart. Installs Janus 1.1.2 (Debian package) if missing and checks its
# loopback configuration answers; driving Janus with the generator is not
# done yet (see docs/BENCHMARKS.md), so no Janus ratios are printed.
#
#     scripts/bench-media.sh [VIEWERS=50,200,500] [RUNS=3] [STORM=500] [WITHIN=10]
#
# Writes target/bench/room.jsonl, target/bench/room.txt, target/bench/room.png.
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${1:-50,200,500}
runs=${2:-3}
storm=${3:-500}
within=${4:-10}
out=target/bench
mkdir -p "$out"

# Janus: install if missing, start on loopback, check the API and plugin.
if ! command -v janus >/dev/null; then
	sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
	sudo_if apt-get install -y janus
fi
conf=$(mktemp -d)
scripts/janus-config.sh "$conf" 18088
janus -C "$conf/janus.jcfg" -F "$conf" >"$out/janus.log" 2>&1 &
janus_pid=$!
trap 'kill $janus_pid 2>/dev/null || true; rm -rf "$conf"' EXIT
for _ in $(seq 50); do
	curl -sf -o /dev/null -X POST -d '{"janus":"info","transaction":"i"}' http://127.0.0.1:18088/janus/info && break
	sleep 0.2
done
session=$(curl -sf -X POST -d '{"janus":"create","transaction":"c"}' http://127.0.0.1:18088/janus | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
curl -sf -X POST -d '{"janus":"attach","plugin":"janus.plugin.videoroom","transaction":"a"}' "http://127.0.0.1:18088/janus/$session" | grep -q '"success"'
echo "Janus $(janus --version 2>/dev/null | head -1 | cut -d' ' -f3-) answers on 127.0.0.1:18088 with the VideoRoom plugin (pid $janus_pid, $(grep VmRSS /proc/$janus_pid/status | awk '{print $2}') KiB idle)."
echo "Janus side by side: not driven by the generator yet; Staffroom alone below."
kill $janus_pid

# Staffroom and the floor.
cargo bench --bench room -- --viewers "$viewers" --runs "$runs" --window 10 --storm "$storm" --within "$within" \
	--json "$out/room.jsonl" | tee "$out/room.txt"

# The chart, with matplotlib from PyPI in a private virtualenv.
if [ ! -x "$out/venv/bin/python" ]; then
	python3 -m venv "$out/venv"
	"$out/venv/bin/pip" install -q matplotlib
fi
"$out/venv/bin/python" scripts/bench-chart.py "$out/room.png" "$out/room.jsonl"
