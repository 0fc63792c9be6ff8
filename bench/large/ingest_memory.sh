#!/bin/bash
# usage: bench/large/ingest_memory.sh ASTERISM FILE
# Ingests FILE into a fresh store with the binary ASTERISM under /usr/bin/time -v and prints
# the wall time, the peak resident memory and the ingest summary's counts. A watchdog stops
# the ingest above 20 GiB resident (before the kernel's out-of-memory killer does).
set -u
if [ ! -x /usr/bin/time ]; then
    echo "needs GNU time at /usr/bin/time (Debian: apt-get install time)" >&2
    exit 2
fi
BIN=$1
FILE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
/usr/bin/time -v "$BIN" ingest --db "$WORK/db" "$FILE" --json > "$WORK/out.json" 2> "$WORK/time" &
TIMER=$!
sleep 0.5
PID=$(pgrep -P $TIMER)
while kill -0 "$PID" 2>/dev/null; do
    rss=$(awk '/VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null)
    if [ -n "$rss" ] && [ "$rss" -gt 20971520 ]; then
        echo "stopped at ${rss} kB resident"
        kill -9 "$PID"
        break
    fi
    sleep 0.2
done
wait $TIMER
count() { grep -o "\"$1\": [0-9]*" "$WORK/out.json" | awk '{print $2}'; }
echo "$(basename "$FILE") wall=$(awk '/Elapsed/{print $NF}' "$WORK/time")" \
    "peak_MiB=$(awk '/Maximum resident/{print int($NF/1024)}' "$WORK/time")" \
    "alerts_read=$(count alerts_read) rejected=$(count alerts_rejected)" \
    "objects_new=$(count objects_new)"
