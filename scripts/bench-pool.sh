#!/usr/bin/env bash
# Benchmark rdsconn proxy's pools (--pool-mode session|transaction) against
# PgBouncer in the same run: login storm, steady -S (and -M prepared) at 8
# and 64 clients, the same over an emulated 0.5 ms network hop, and 1,000
# idle clients on 20 server connections. Prints the Markdown tables for
# BENCHMARKS.md. Needs root (like the tests).
#   scripts/bench-pool.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts a pgbouncer service on install; the benchmark runs its own.
systemctl stop pgbouncer 2>/dev/null || true
# 1,000 clients at once.
ulimit -n "$(ulimit -Hn)"
exec cargo bench --locked --bench pool -- "${1:-15}" "${2:-3}"
