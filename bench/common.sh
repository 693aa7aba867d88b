# Sourced by the benchmark scripts: works from the repository root, finds the cargo target
# directory, and stops early, with the apt-get line, when a tool the script needs is missing.
# TRELLIS_BENCH_SMOKE=1 is the test command's smoke run: the debug binaries as they are
# (nothing built) and each benchmark at its smallest, to prove it still runs end to end; its
# figures mean nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
smoke="${TRELLIS_BENCH_SMOKE:-}"

# need "debian packages" tool...
need() {
  local packages=$1
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install -y $packages)"; exit 2; }
  done
}

# built PROFILE PACKAGE...: builds the packages with PROFILE and prints where their binaries
# are (in a smoke run: the debug ones, unbuilt).
built() {
  local profile=$1 args=() package
  shift
  if [[ -n "$smoke" ]]; then
    echo "$target_dir/debug"
    return
  fi
  for package in "$@"; do args+=(-p "$package"); done
  cargo build --profile "$profile" -q "${args[@]}" >&2 || return
  echo "$target_dir/$profile"
}
