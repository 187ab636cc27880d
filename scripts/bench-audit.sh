#!/usr/bin/env bash
# Benchmark `rdsconn audit` against the equivalent AWS CLI loop on moto with
# 500 instances. Prints the Markdown report for BENCHMARKS.md.
#   scripts/bench-audit.sh [RUNS]
set -euo pipefail
exec "$(dirname "$0")/bench-moto.sh" scripts/bench_audit.py "${1:-1}"
