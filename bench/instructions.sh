#!/usr/bin/env bash
# User-space instructions per request of trellis-proxy, nginx and HAProxy under callgrind: the
# steady figure to compare two builds by. Not a test. Needs Debian's valgrind, nginx-light and
# haproxy.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control nginx haproxy python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y valgrind nginx-light haproxy)"; exit 2; }
done
cargo build --profile dist -q -p trellis-proxy
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
exec python3 bench/instructions.py --bin-dir "$target_dir/dist" "$@"
