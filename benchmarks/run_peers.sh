#!/usr/bin/env bash
# run_peers.sh -- our RFB server (direct and through the whole product chain) against
# x11vnc and x0vncserver in one run of the peer harness, then the ours/peer ratios.
#
#   benchmarks/run_peers.sh --harness DIR                          # the 2026-11-27 settings
#   benchmarks/run_peers.sh --harness DIR --duration 15 --keys 30  # more run.sh options (appended)
#
# --harness DIR (required) is a checkout of the bench-peers harness (run.sh, rfbbench.py,
# workloads.sh); it is not part of this repository and is only read: run.sh writes to --out
# (OUT, default $TMPDIR/bench-peers-enkaku/<stamp>) and $RFBBENCH_CACHE.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: benchmarks/run_peers.sh --harness DIR [run.sh options...]
  --harness DIR   the bench-peers harness checkout (the directory holding run.sh); required
  other options are passed to DIR/run.sh after ours (e.g. --duration 15 --keys 30)
environment: PY (default .venv/bin/python), OUT (default $TMPDIR/bench-peers-enkaku/<stamp>)
EOF
}

HARNESS=""
passthrough=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --harness) [ "$#" -ge 2 ] || { echo "run_peers.sh: --harness needs a directory" >&2; usage; exit 2; }
               HARNESS="$2"; shift 2 ;;
    --harness=*) HARNESS="${1#--harness=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
if [ -z "$HARNESS" ]; then
  echo "run_peers.sh: --harness DIR is required (the bench-peers harness is not part of this repository)" >&2
  usage
  exit 2
fi
if [ ! -x "$HARNESS/run.sh" ]; then
  echo "run_peers.sh: $HARNESS/run.sh not found or not executable; --harness must name the harness checkout" >&2
  exit 2
fi
HARNESS="$(cd "$HARNESS" && pwd)"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PY="${PY:-$ROOT/.venv/bin/python}"       # needs numpy, pillow, tkinter
OUT="${OUT:-${TMPDIR:-/tmp}/bench-peers-enkaku/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
cd "$ROOT"                                      # for python -m benchmarks.*
"$HARNESS/run.sh" --out "$OUT" --duration 6 --profiles "tight zrle" --keys 15 \
  --server "enkaku=$PY -m benchmarks.rfb_direct --display {display} --port {port} -v" \
  --server "enkaku-e2e=$PY -m benchmarks.e2e_chain --display {display} --port {port} --cpu-log $OUT/e2e-cpu.jsonl" \
  ${passthrough[@]+"${passthrough[@]}"}
echo
"$PY" -m benchmarks.ratios "$OUT/results.jsonl"
echo
echo "e2e chain CPU (agent, relay server, connect) over the whole enkaku-e2e run:"
grep -A3 'e2e_chain: CPU over' "$OUT/logs/enkaku-e2e-server.log" || true
