#!/usr/bin/env bash
# The audit log at scale: 1,000,000 events written through the control plane's writer into a
# fresh database on the Postgres server (TRELLIS_TEST_POSTGRES_URL, or the local one), then
# filtered page queries timed, with the indexes and plans. Usage: bench/audit.sh [--events N]
source "$(dirname "$0")/common.sh"
bin_dir=$(built release trellis-bench)
exec "$bin_dir/auditbench" ${smoke:+--events 2000 --burst 500} "$@"
