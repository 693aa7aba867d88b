#!/usr/bin/env bash
# The cost of mTLS between proxies: a two-proxy chain in plaintext, over mTLS, and nginx with
# mTLS between its hops, in one run; prints the table and the ratios. Not a test.
# Needs Debian's nginx-light, wrk, openssl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx wrk openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y nginx-light wrk openssl util-linux)"; exit 2; }
done
cargo build --profile dist -q -p trellis-proxy
# Only to issue the certificates: the dev build the tests use will do.
cargo build -q -p trellis-server --bin trellis
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
exec python3 bench/mtls.py --bin-dir "$target_dir/dist" --trellis "$target_dir/debug/trellis" "$@"
