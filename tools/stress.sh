#!/usr/bin/env bash
# Stress run: the whole catalogue in a loop, alternating the built-in
# implementations, with CPU load on every core beside it. Any FAIL, BROKEN,
# TIMEOUT or XPASS of a correct implementation is a false alarm. Afterwards
# nothing may be left: segments, processes, run dirs.
#   tools/stress.sh [RUNS] [SHMCONF]   (default 100, target/release/shmconf)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
shmconf=${2:-target/release/shmconf}
out=${STRESS_OUT:-target/stress}
mkdir -p "$out"
load=()
for _ in $(seq "$(nproc)"); do
  sha256sum /dev/zero >/dev/null 2>&1 &
  load+=($!)
done
trap 'kill "${load[@]}" 2>/dev/null' EXIT
alarms=0
start=$(date +%s)
for i in $(seq "$runs"); do
  impl=rust
  [ $((i % 2)) -eq 0 ] && impl=c-reference
  "$shmconf" run --impl "$impl" scenarios >"$out/run-$i.txt" 2>&1
  rc=$?
  summary=$(grep '^implementation ' "$out/run-$i.txt")
  if [ "$rc" -ne 0 ]; then
    alarms=$((alarms + 1))
    echo "run $i ($impl): exit $rc: $summary"
    grep -E '^--- (FAIL|BROKEN|TIMEOUT|XPASS)' "$out/run-$i.txt"
  else
    rm -f "$out/run-$i.txt"
  fi
done
end=$(date +%s)
kill "${load[@]}" 2>/dev/null
segments=$(awk 'NR>1' /proc/sysvipc/shm | wc -l)
dirs=$(find "${TMPDIR:-/tmp}/shmconf-runs" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
echo "stress: $runs runs of the catalogue under load on $(nproc) cores in $((end - start)) s: $alarms false alarm(s); left: $segments segment(s), $dirs run dir(s)"
[ "$alarms" -eq 0 ] && [ "$segments" -eq 0 ] && [ "$dirs" -eq 0 ]
