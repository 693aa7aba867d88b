#!/usr/bin/env bash
# User-space instructions per request of trellis-proxy, nginx and HAProxy under callgrind: the
# steady figure to compare two builds by. Not a test. Needs Debian's valgrind, nginx-light and
# haproxy.
source "$(dirname "$0")/common.sh"
need "valgrind nginx-light haproxy nghttp2-client" valgrind callgrind_control nginx haproxy h2load python3
proxy_dir=$(built dist trellis-proxy)
bench_dir=$(built release trellis-bench)
exec python3 bench/instructions.py --bin-dir "$proxy_dir" --bench-dir "$bench_dir" ${smoke:+--smoke} "$@"
