#!/usr/bin/env bash
# Sets up what is missing, builds, and runs the demo mesh: http://127.0.0.1:8080
# Extra arguments go to `trellis demo` (e.g. --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-web.sh
cargo build --bins
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
exec "$target_dir/debug/trellis" demo "$@"
