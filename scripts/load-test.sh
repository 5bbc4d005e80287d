#!/usr/bin/env bash
# The cluster under load (issue 16): a scheduler and 2 executor processes of 2 slots each,
# default settings, on this machine beside $BURNERS (default 2) CPU-burning processes; the
# lineitem self-join on l_partkey at scale factor $SF (default 1, 148 M pairs) runs $RUNS
# times (default 10). Each count is checked against sum(n^2) over the part keys, computed
# apart on the embedded cluster before the load starts. Prints one line per run, the
# executors the scheduler declared lost, and a closing 'N passed, N failed' line; exits
# non-zero on any wrong result or lost executor. Not a timed test: times are printed only.
#
#   scripts/load-test.sh
#   SF=0.1 RUNS=3 scripts/load-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SF=${SF:-1}
RUNS=${RUNS:-10}
BURNERS=${BURNERS:-2}
DATA=${DATA:-data/tpch-sf$SF}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -p ember --quiet
EMBER="$TARGET/release/ember"

if [ ! -f "$DATA/_SUCCESS" ]; then
  echo "generating TPC-H sf $SF in $DATA" >&2
  "$EMBER" datasets tpch --sf "$SF" --out "$DATA" --parts 4
fi
LINEITEM="lineitem=$DATA/lineitem:parquet"

WORK=$(mktemp -d -t ember-load-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

expected=$("$EMBER" sql --executors 2 --format csv --table "$LINEITEM" \
  "SELECT sum(n * n) AS pairs FROM (SELECT count(*) AS n FROM lineitem GROUP BY l_partkey)" | tail -n 1)
echo "expected pairs: $expected"

"$EMBER" scheduler --bind 127.0.0.1:0 >"$WORK/scheduler.out" 2>"$WORK/scheduler.log" &
pids+=($!)
for _ in $(seq 100); do
  grep -q listening "$WORK/scheduler.out" 2>/dev/null && break
  sleep 0.1
done
URL="http://$(awk '{print $NF}' "$WORK/scheduler.out")"
for i in 1 2; do
  "$EMBER" executor --scheduler "$URL" --slots 2 --work-dir "$WORK/e$i" \
    >"$WORK/executor-$i.out" 2>"$WORK/executor-$i.log" &
  pids+=($!)
done
for _ in $(seq 100); do
  [ "$(cat "$WORK"/executor-*.out 2>/dev/null | grep -c listening)" -ge 2 ] && break
  sleep 0.1
done
for _ in $(seq "$BURNERS"); do
  sh -c 'while :; do :; done' &
  pids+=($!)
done

passed=0
failed=0
for run in $(seq "$RUNS"); do
  start=$(date +%s.%N)
  if got=$("$EMBER" sql --scheduler "$URL" --format csv --table "$LINEITEM" \
    "SELECT count(*) AS pairs FROM lineitem a JOIN lineitem b ON a.l_partkey = b.l_partkey" \
    2>"$WORK/client-$run.log" | tail -n 1); then :; else got="error: $(tail -n 1 "$WORK/client-$run.log")"; fi
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  if [ "$got" = "$expected" ]; then
    passed=$((passed + 1))
    echo "run $run: $got pairs in ${took}s"
  else
    failed=$((failed + 1))
    echo "run $run: WRONG ($got, expected $expected) in ${took}s"
  fi
done

lost=$(grep -c "executor lost" "$WORK/scheduler.log" || true)
echo "executors declared lost: $lost"
grep "executor lost" "$WORK/scheduler.log" || true
if [ "$lost" -gt 0 ]; then
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
