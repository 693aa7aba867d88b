#!/usr/bin/env bash
# The fleet at scale: one control plane (`trellis serve`, SQLite) and N simulated proxies
# (`fleetsim`), then a commit; reports commit-to-ACK p50/p99/max and the control plane's memory
# and CPU. Usage: bench/fleet.sh [N ...]   (default: 1000 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p trellis-server -p trellis-bench
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
ulimit -n "$(ulimit -Hn)"
for n in "${@:-1000 5000}"; do
  for count in $n; do
    work=$(mktemp -d /tmp/trellis-fleet.XXXXXX)
    mkdir -p "$work/policy/routes"
    cp -r policies/. "$work/policy/"
    git -C "$work/policy" init -q -b main
    git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid add -A
    git -C "$work/policy" -c user.name=bench -c user.email=bench@trellis.invalid commit -qm seed
    TRELLIS_LOG=warn "$target_dir/release/trellis" serve --repo "$work/policy" --listen 127.0.0.1:18980 --data-dir "$work/data" &
    cp_pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/18980) 2>/dev/null && break; sleep 0.1; done
    echo "N=$count: $("$target_dir/release/fleetsim" --control-plane http://127.0.0.1:18980 --cp-pid $cp_pid --repo "$work/policy" --proxies "$count")"
    kill $cp_pid; wait $cp_pid 2>/dev/null || true
    rm -rf "$work"
  done
done
