#!/usr/bin/env bash
# Benchmark what the proxy's operations surface costs (--prometheus
# --health-check --log-format json vs plain, same run) and its memory with
# many idle clients, against the test harness's PostgreSQL. Prints the
# Markdown tables for BENCHMARKS.md. Needs root (like the tests).
#   scripts/bench-sidecar.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
exec cargo bench --locked --bench sidecar -- "${1:-20}" "${2:-3}"
