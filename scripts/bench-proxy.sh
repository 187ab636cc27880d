#!/usr/bin/env bash
# Benchmark the same load directly over verified TLS and through
# `rdsconn proxy`: pgbench -S for PostgreSQL, a mysql_async load loop for
# MariaDB, against the test harness's local servers. Prints the Markdown
# tables for BENCHMARKS.md. Needs root (like the tests).
#   scripts/bench-proxy.sh [SECONDS] [ROUNDS]
#   RDSCONN_BENCH_BINARY=/path/to/older/rdsconn scripts/bench-proxy.sh   # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
command -v socat >/dev/null || need+=(socat)
# pgbench ships with the server package on Debian.
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec cargo bench --locked --bench proxy -- "${1:-30}" "${2:-2}"
