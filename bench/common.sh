# Sourced by the benchmark scripts: works from the repository root, finds the cargo target
# directory, and stops early, with the apt-get line, when a tool the script needs is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

# need "debian packages" tool...
need() {
  local packages=$1
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y $packages)"; exit 2; }
  done
}
