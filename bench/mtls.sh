#!/usr/bin/env bash
# The cost of mTLS between proxies: a two-proxy chain in plaintext, over mTLS, and nginx with
# mTLS between its hops, in one run; prints the table and the ratios. Not a test.
# Needs Debian's nginx-light, wrk, openssl and python3.
source "$(dirname "$0")/common.sh"
need "nginx-light wrk openssl util-linux" nginx wrk openssl taskset python3
proxy_dir=$(built dist trellis-proxy)
# Only to issue the certificates: the dev build the tests use will do.
[[ -n "$smoke" ]] || cargo build -q -p trellis-server --bin trellis
exec python3 bench/mtls.py --bin-dir "$proxy_dir" --trellis "$target_dir/debug/trellis" ${smoke:+--smoke} "$@"
