#!/usr/bin/env bash
# Benchmark `rdsconn ls` against the AWS CLI on moto with 500 instances.
# Prints the Markdown report for BENCHMARKS.md.
#   scripts/bench-ls.sh [RUNS]
set -euo pipefail
exec "$(dirname "$0")/bench-moto.sh" scripts/bench_ls.py "${1:-10}"
