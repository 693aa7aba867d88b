#!/usr/bin/env bash
# The open-loop tail of trellis-proxy against nginx's on many pairs of runs, with a bootstrap
# interval of the p99 ratio at 20/50/80 % of nginx's saturation. Not a test.
# Needs Debian's nginx-light, wrk and python3.
source "$(dirname "$0")/common.sh"
need "nginx-light wrk util-linux" nginx wrk taskset python3
proxy_dir=$(built dist trellis-proxy)
bin_dir=$(built release trellis-bench)
exec python3 bench/tail.py --bin-dir "$bin_dir" --proxy-dir "$proxy_dir" ${smoke:+--smoke} "$@"
