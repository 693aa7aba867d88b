#!/usr/bin/env bash
# Benchmarks trellis-proxy against a direct connection, nginx and HAProxy in one run, and prints
# the table and the ratios. Not a test: numbers depend on the machine; ratios are the result.
# Needs Debian's nginx-light, haproxy, wrk, nghttp2-client (h2load) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx haproxy wrk h2load taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y nginx-light haproxy wrk nghttp2-client util-linux)"; exit 2; }
done
cargo build --profile dist -q -p trellis-proxy
cargo build --release -q -p trellis-bench
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
exec python3 bench/run.py --bin-dir "$target_dir/release" --proxy-dir "$target_dir/dist" "$@"
