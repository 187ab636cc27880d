#!/usr/bin/env bash
# Benchmark the built-in SSH tunnel (--via ssh://) against the same bastion
# used by hand (ssh -L + --via HOST:PORT), and rdsconn proxy throughput
# directly and through one ssh, against the test harness's sshd and
# PostgreSQL. Prints the Markdown for BENCHMARKS.md. Needs root (like the tests).
#   scripts/bench-tunnel.sh [RUNS] [SECONDS]
#   RDSCONN_BENCH_BINARY=/path/to/older/rdsconn scripts/bench-tunnel.sh   # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v pgbench >/dev/null || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec cargo bench --locked --bench tunnel -- "${1:-20}" "${2:-15}"
