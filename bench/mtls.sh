#!/usr/bin/env bash
# The cost of mTLS between proxies: a two-proxy chain in plaintext, over mTLS, and nginx with
# mTLS between its hops, in one run; prints the table and the ratios. Not a test.
# Needs Debian's nginx-light, wrk, openssl and python3.
source "$(dirname "$0")/common.sh"
need "nginx-light wrk openssl util-linux" nginx wrk openssl taskset python3
cargo build --profile dist -q -p trellis-proxy
# Only to issue the certificates: the dev build the tests use will do.
cargo build -q -p trellis-server --bin trellis
exec python3 bench/mtls.py --bin-dir "$target_dir/dist" --trellis "$target_dir/debug/trellis" "$@"
