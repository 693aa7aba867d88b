#!/usr/bin/env bash
# Sets up what is missing and runs every test: Rust unit and integration tests (Postgres and
# SQLite store tests included) and the Playwright browser tests in Debian's Chromium.
# Uses the Postgres at 127.0.0.1:5432 when one answers; otherwise starts a throwaway cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/setup.sh --for-tests
target_dir="${CARGO_TARGET_DIR:-$root/target}"

# --- Postgres -------------------------------------------------------------------------------
pg_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ -z "${TRELLIS_TEST_POSTGRES_URL:-}" ]]; then
  if pg_up 5432; then
    export TRELLIS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
    pgdir=$(mktemp -d /tmp/trellis-pg.XXXXXX)
    port=55432
    echo "test: no Postgres on 5432; starting a throwaway cluster in $pgdir on port $port"
    run_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    [[ $(id -u) == 0 ]] && chown postgres "$pgdir"
    chmod 700 "$pgdir"
    run_pg "$bin/initdb" -D "$pgdir/data" -U postgres -A trust >/dev/null
    run_pg "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
      -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    trap 'run_pg "$bin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null; rm -rf "$pgdir"' EXIT
    export TRELLIS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
echo "test: Postgres at $TRELLIS_TEST_POSTGRES_URL"

# --- Rust -----------------------------------------------------------------------------------
export TRELLIS_TEST_PYTHON="$root/tools/venv/bin/python"  # with grpcio (scripts/setup.sh)
scripts/build-web.sh
cargo build --bins
cargo test --workspace

# --- Benchmarks: each once in its smoke mode (debug binaries, tiny sizes, any error fails), so
# that a change that breaks one fails here; figures come from full runs (bench/README.md) ----
export TRELLIS_BENCH_SMOKE=1
bench/fleet.sh --compare-full 20
bench/fleet.sh --replicas 3 30
bench/run.sh
bench/tail.sh
bench/mtls.sh
bench/instructions.sh
bench/audit.sh
bench/topology.sh
unset TRELLIS_BENCH_SMOKE

# --- Browser --------------------------------------------------------------------------------
export TRELLIS_BIN="$target_dir/debug/trellis"
export TRELLIS_SITE_ROOT="$target_dir/site"
export TRELLIS_E2E_DATA_DIR="$target_dir/e2e-demo"
rm -rf "$TRELLIS_E2E_DATA_DIR"
(cd playwright && npx playwright test)
echo "test: all passed"
