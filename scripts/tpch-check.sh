#!/usr/bin/env bash
# Generates TPC-H at scale factor $SF (default 1) if it is missing, runs the 22 queries through
# `ember sql --executors $EXECUTORS` (default 2), and compares every result with the official
# answers in datasets/tpch/answers-sf1 (numbers to 0.01, row order as the query orders).
#
#   scripts/tpch-check.sh            # SF1, 2 executors
#   SF=1 EXECUTORS=4 DATA=/big/tpch scripts/tpch-check.sh
#   EMBER_ARGS="--conf ember.shuffle.partitions=8" scripts/tpch-check.sh   # more ember sql options
set -euo pipefail
cd "$(dirname "$0")/.."

SF=${SF:-1}
EXECUTORS=${EXECUTORS:-2}
DATA=${DATA:-data/tpch-sf$SF}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/tpch-check-sf$SF}

cargo build --release -p ember --quiet
EMBER="$TARGET/release/ember"

if [ ! -f "$DATA/_SUCCESS" ]; then
  echo "generating TPC-H sf $SF in $DATA" >&2
  "$EMBER" datasets tpch --sf "$SF" --out "$DATA" --parts 4
fi

tables=()
for t in region nation part supplier partsupp customer orders lineitem; do
  tables+=(--table "$t=$DATA/$t:parquet")
done

rm -rf "$OUT"
mkdir -p "$OUT"
for n in $(seq -w 1 22); do
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # EMBER_ARGS is split into options on purpose
  if ! "$EMBER" sql --executors "$EXECUTORS" ${EMBER_ARGS:-} "${tables[@]}" --format csv \
      --file "datasets/tpch/queries/q$n.sql" > "$OUT/q$n.csv" 2> "$OUT/q$n.err"; then
    echo "q$n: ember failed: $(cat "$OUT/q$n.err")" >&2
  fi
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }' > "$OUT/q$n.seconds"
done

python3 scripts/compare_tpch.py --answers datasets/tpch/answers-sf1 --results "$OUT"
