#!/usr/bin/env bash
# The fleet at scale: one control plane (`trellis serve`, SQLite) and N simulated proxies
# (`fleetsim`) that join as real ones do (a join token, a certificate, mTLS), then a commit;
# reports commit-to-ACK p50/p99/max and the control plane's memory and CPU.
# Usage: bench/fleet.sh [N ...]   (default: 1000 5000)
# TRELLIS_BENCH_PROFILE=debug uses the debug binaries as they are (the test command's smoke run).
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
profile="${TRELLIS_BENCH_PROFILE:-release}"
if [[ "$profile" == release ]]; then
  cargo build --release -q -p trellis-server -p trellis-bench
fi
bin="$target_dir/$profile"
ulimit -n "$(ulimit -Hn)"
for n in "${@:-1000 5000}"; do
  for count in $n; do
    work=$(mktemp -d /tmp/trellis-fleet.XXXXXX)
    mkdir -p "$work/policy/routes"
    cp -r policies/. "$work/policy/"
    git -C "$work/policy" init -q -b main
    git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid add -A
    git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid commit -qm seed
    TRELLIS_LOG=warn "$bin/trellis" serve --repo "$work/policy" --listen 127.0.0.1:18980 \
      --fleet-listen 127.0.0.1:18981 --data-dir "$work/data" &
    cp_pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18980) 2>/dev/null && break; sleep 0.1; done
    token=$("$bin/trellis" join-token inventory --data-dir "$work/data")
    result=$("$bin/fleetsim" --control-plane http://127.0.0.1:18980 --cp-pid $cp_pid --repo "$work/policy" \
      --proxies "$count" --join-token "$token") || { kill $cp_pid; rm -rf "$work"; exit 1; }
    echo "N=$count: $result"
    kill $cp_pid; wait $cp_pid 2>/dev/null || true
    rm -rf "$work"
  done
done
