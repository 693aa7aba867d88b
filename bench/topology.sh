#!/usr/bin/env bash
# The topology page at scale (issue: the dashboard at 200 services): a control plane and
# simulated proxies in one process (`topologysim`: a generated policy of S services, P proxies
# reporting every 2 s), and the page measured in Debian's Chromium (bench/topology.js): first
# paint, the delay from each server-sent event to the graph redrawn, and how soon a service
# that starts failing turns red. Targets: first paint ≤ 300 ms and every event visible ≤ 1 s
# at 200 services and 1,000 proxies.
# Usage: bench/topology.sh [SERVICES PROXIES]   (default 200 1000)
# TRELLIS_BENCH_SMOKE=1 (the test command's smoke run): the debug binaries, 12 services, 24 proxies.
source "$(dirname "$0")/common.sh"
need chromium chromium
need nodejs node
[[ -d playwright/node_modules/@playwright/test ]] || { echo "bench: run scripts/setup.sh --for-tests first (Playwright from npm)"; exit 2; }
services=${1:-200} proxies=${2:-1000} seconds=10
[[ -n "$smoke" ]] && services=${1:-12} proxies=${2:-24} seconds=2
bin=$(built release trellis-bench)
site="${TRELLIS_SITE_ROOT:-$target_dir/site}"
[[ -f "$site/pkg/trellis_web_bg.wasm" ]] || { echo "bench: no dashboard bundle in $site: run scripts/build-web.sh"; exit 2; }
unset DATABASE_URL
result=$(NODE_PATH="$PWD/playwright/node_modules" TRELLIS_LOG=warn "$bin/topologysim" --services "$services" \
  --proxies "$proxies" --seconds "$seconds" --site-root "$site" --measure bench/topology.js)
echo "$result"
python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
b = r["browser"]
print(f"topology at {r['services']} services, {r['proxies']} proxies, {r['edges']} edges ({b['nodes']} nodes drawn)")
print(f"  first paint      {b['first_paint_ms']['median']} ms median of {b['first_paint_ms']['runs']} (target <= 300 ms)")
print(f"  graph painted    {b['graph_painted_ms']['median']} ms median of {b['graph_painted_ms']['runs']}")
print(f"  event -> visible p50 {b['sse_to_visible_ms']['p50']} ms, max {b['sse_to_visible_ms']['max']} ms over {b['sse_to_visible_ms']['events']} events (target <= 1000 ms)")
print(f"  failing service red after {b['failure_visible_ms']} ms (reports every 2 s, figures settle 3 s)")
print(f"  control plane and simulated proxies: {r['process_rss_mb']:.0f} MB resident")
PY
