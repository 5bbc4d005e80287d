#!/usr/bin/env bash
# Peak memory of the `ember sql` client printing a large result: runs
#
#   ember sql --executors $EXECUTORS --table lineitem=$DATA/lineitem:parquet \
#       --format csv "SELECT * FROM lineitem"
#
# on TPC-H at scale factor $SF (default 1, generated into $DATA when missing) under
# GNU time, counts the bytes printed, and prints the peak RSS. Results are streamed, so
# the figure stays far below the size of the output; a client that collects first needs
# more than the whole result. The embedded cluster runs inside the client, so the figure
# includes its executors' scans.
#
#   scripts/client-rss.sh                               # builds and measures the release binary
#   EMBER=target/debug/ember scripts/client-rss.sh      # measures this binary
#   SF=1 EXECUTORS=2 DATA=/big/tpch scripts/client-rss.sh
#   FORMAT=json scripts/client-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SF=${SF:-1}
EXECUTORS=${EXECUTORS:-2}
FORMAT=${FORMAT:-csv}
DATA=${DATA:-data/tpch-sf$SF}
TARGET=${CARGO_TARGET_DIR:-target}

if [ ! -x /usr/bin/time ]; then
  echo "needs GNU time in /usr/bin/time (apt-get install time)" >&2
  exit 1
fi
if [ -z "${EMBER:-}" ]; then
  cargo build --release -p ember --bin ember --quiet
  EMBER="$TARGET/release/ember"
fi
if [ ! -f "$DATA/_SUCCESS" ]; then
  echo "generating TPC-H sf $SF in $DATA" >&2
  "$EMBER" datasets tpch --sf "$SF" --out "$DATA"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
bytes=$(/usr/bin/time -v -o "$log" "$EMBER" sql --executors "$EXECUTORS" \
  --table "lineitem=$DATA/lineitem:parquet" --format "$FORMAT" \
  "SELECT * FROM lineitem" | wc -c)
if ! grep -q "Exit status: 0" "$log"; then
  cat "$log" >&2
  exit 1
fi
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
echo "$EMBER sql --format $FORMAT \"SELECT * FROM lineitem\" (sf $SF, $EXECUTORS executors)"
echo "printed:  $((bytes / 1000000)) MB"
echo "peak RSS: $((rss_kb / 1024)) MiB ($rss_kb kB)"
echo "wall:     $wall"
