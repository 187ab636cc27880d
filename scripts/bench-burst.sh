#!/usr/bin/env bash
# Benchmark a login burst through `rdsconn proxy` (pgbench -C -S, and 200
# clients at once with an open session's latency measured meanwhile),
# against the test harness's local PostgreSQL, direct verified TLS as the
# reference. Prints the Markdown tables for BENCHMARKS.md. Needs root (like
# the tests).
#   scripts/bench-burst.sh [SECONDS] [ROUNDS]
#   RDSCONN_BASELINE=/path/to/older/rdsconn scripts/bench-burst.sh   # compare builds
set -euo pipefail
cd "$(dirname "$0")/.."
# pgbench ships with the server package on Debian.
if ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
exec cargo bench --locked --bench burst -- "${1:-20}" "${2:-3}"
