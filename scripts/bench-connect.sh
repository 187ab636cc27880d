#!/usr/bin/env bash
# Benchmark connect + SELECT 1 + exit over verified TLS: rdsconn vs the
# mariadb and psql clients, against the test harness's local servers; and
# what --secret adds (one GetSecretValue against moto).
# Prints the Markdown table for BENCHMARKS.md. Needs root (like the tests).
#   scripts/bench-connect.sh [RUNS]
#   RDSCONN_BENCH_BINARY=/path/to/older/rdsconn scripts/bench-connect.sh   # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/bin/time ] || need+=(time)   # GNU time measures peak RSS
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
command -v psql >/dev/null || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# moto (for the --secret row) comes from the test venv.
if [ ! -x .venv/bin/moto_server ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
exec cargo bench --locked --bench connect -- "${1:-30}"
