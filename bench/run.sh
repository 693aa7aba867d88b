#!/usr/bin/env bash
# Benchmarks trellis-proxy against a direct connection, nginx and HAProxy in one run, and prints
# the table and the ratios. Not a test: numbers depend on the machine; ratios are the result.
# Needs Debian's nginx-light, haproxy, wrk, nghttp2-client (h2load) and python3.
source "$(dirname "$0")/common.sh"
need "nginx-light haproxy wrk nghttp2-client util-linux" nginx haproxy wrk h2load taskset python3
proxy_dir=$(built dist trellis-proxy)
bin_dir=$(built release trellis-bench)
exec python3 bench/run.py --bin-dir "$bin_dir" --proxy-dir "$proxy_dir" ${smoke:+--smoke} "$@"
