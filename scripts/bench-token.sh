#!/usr/bin/env bash
# Benchmark `rdsconn token` against `aws rds generate-db-auth-token` (the AWS
# CLI from PyPI, in .venv). Prints the Markdown report for BENCHMARKS.md.
#   scripts/bench-token.sh [RUNS]
#   RDSCONN_BENCH_BINARY=/path/to/older/rdsconn scripts/bench-token.sh   # measure another build
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/aws ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
if [ ! -x /usr/bin/time ]; then   # GNU time measures peak RSS
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq time >/dev/null; else sudo apt-get install -y -qq time >/dev/null; fi
fi
cargo build --release --locked --quiet
exec .venv/bin/python scripts/bench_token.py "${RDSCONN_BENCH_BINARY:-target/release/rdsconn}" .venv/bin/aws "${1:-30}"
