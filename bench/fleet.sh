#!/usr/bin/env bash
# The fleet at scale: a control plane (`trellis serve`) and N simulated proxies (`fleetsim`)
# that join as real ones do (a join token, a certificate, mTLS), then a commit; reports
# commit-to-ACK p50/p99/max and the control plane's memory and CPU.
# With --replicas R (R > 1): R replicas on 127.0.0.1, .2, ... sharing a fresh database on the
# Postgres server (TRELLIS_TEST_POSTGRES_URL, or the local one), the proxies spread across
# them; then the leader is killed (SIGKILL): takeover time, the p99 time for its proxies to be
# connected elsewhere, and a commit's ACKs on the replicas left.
# The proxies take the demo mesh's shape (one in ten a storefront, which calls inventory and
# catalog; the rest serve those two) and take deltas; with --compare-full, each N runs again
# with every change sent as a full config, to show what deltas save.
# Usage: bench/fleet.sh [--replicas R] [--compare-full] [N ...]
#   (default: one replica on SQLite, 1000 5000 10000, full configs compared at 1000)
# TRELLIS_BENCH_SMOKE=1 (the test command's smoke run): the debug binaries, N=20 by default.
source "$(dirname "$0")/common.sh"
replicas=1 compare=""
while [[ "${1:-}" == --* ]]; do
  case $1 in
    --replicas) replicas=$2; shift 2 ;;
    --compare-full) compare=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
need curl curl
((replicas == 1)) || need postgresql-client psql
bin=$(built release trellis-server trellis-bench)
postgres="${TRELLIS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ulimit -n "$(ulimit -Hn)"

work="" db="" pids=()
# Stops what a run started, also when it failed.
cleanup() {
  ((${#pids[@]})) && { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
  [[ -n "$db" ]] && psql "$postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  [[ -n "$work" ]] && rm -rf "$work"
  work="" db="" pids=()
}
trap cleanup EXIT

# run N [--full]: one measured run with $replicas replicas.
run() {
  local count=$1 urls=() r host tokens=() service result
  work=$(mktemp -d /tmp/trellis-fleet.XXXXXX)
  unset DATABASE_URL
  if ((replicas > 1)); then
    db="trellis_fleet_bench_$$"
    psql "$postgres" -qc "CREATE DATABASE $db" >/dev/null
    export DATABASE_URL="${postgres%/*}/$db"
  fi
  mkdir -p "$work/policy"
  cp -r policies/. "$work/policy/"
  # The reference Notifications name secrets this control plane is not given (it would reject
  # the revision, TR0126); the fleet is measured without them.
  rm -rf "$work/policy/notifications"
  git -C "$work/policy" init -q -b main
  git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid add -A
  git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid commit -qm seed
  for ((r = 0; r < replicas; r++)); do
    host="127.0.0.$((r + 1))"
    TRELLIS_LOG=${TRELLIS_LOG:-warn} TRELLIS_REPLICA_ID="replica-$r" "$bin/trellis" serve --repo "$work/policy" \
      --listen "$host:18980" --fleet-listen "$host:18981" --data-dir "$work/data-$r" &
    pids+=($!)
    urls+=("http://$host:18980")
  done
  for ((r = 0; r < replicas; r++)); do
    for _ in $(seq 300); do curl -sfo /dev/null "${urls[r]}/api/v1/fleet" && break; sleep 0.1; done
  done
  for service in storefront inventory catalog; do
    tokens+=("$service=$("$bin/trellis" join-token "$service" --data-dir "$work/data-0")")
  done
  result=$("$bin/fleetsim" --control-plane "$(IFS=,; echo "${urls[*]}")" --cp-pid "$(IFS=,; echo "${pids[*]}")" \
    --repo "$work/policy" --proxies "$count" --join-tokens "$(IFS=,; echo "${tokens[*]}")" ${2:-})
  echo "N=$count replicas=$replicas${2:+ $2}: $result"
  cleanup
}

if (($# == 0)); then
  set -- 1000 5000 10000
  [[ -n "$smoke" ]] && set -- 20
  compare=${compare:-first}
fi
for count in "$@"; do
  run "$count"
  if [[ "$compare" == 1 || ("$compare" == first && "$count" == "$1") ]]; then
    run "$count" --full
  fi
done
