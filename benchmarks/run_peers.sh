#!/usr/bin/env bash
# run_peers.sh -- our RFB server (direct and through the whole product chain) against
# x11vnc and x0vncserver in one run of the shared harness, then the ours/peer ratios.
#
#   benchmarks/run_peers.sh                       # the 2026-11-27 settings
#   benchmarks/run_peers.sh --duration 15 --keys 30   # more run.sh options (appended)
#
# HARNESS (default /work/shared/bench-peers) is read-only: run.sh writes only to --out
# (OUT, default $TMPDIR/bench-peers-enkaku/<stamp>) and $RFBBENCH_CACHE.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${HARNESS:-/work/shared/bench-peers}"
export PY="${PY:-$ROOT/.venv/bin/python}"       # needs numpy, pillow, tkinter
OUT="${OUT:-${TMPDIR:-/tmp}/bench-peers-enkaku/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
cd "$ROOT"                                      # for python -m benchmarks.*
"$HARNESS/run.sh" --out "$OUT" --duration 6 --profiles "tight zrle" --keys 15 \
  --server "enkaku=$PY -m benchmarks.rfb_direct --display {display} --port {port} -v" \
  --server "enkaku-e2e=$PY -m benchmarks.e2e_chain --display {display} --port {port} --cpu-log $OUT/e2e-cpu.jsonl" \
  "$@"
echo
"$PY" -m benchmarks.ratios "$OUT/results.jsonl"
echo
echo "e2e chain CPU (agent, relay server, connect) over the whole enkaku-e2e run:"
grep -A3 'e2e_chain: CPU over' "$OUT/logs/enkaku-e2e-server.log" || true
