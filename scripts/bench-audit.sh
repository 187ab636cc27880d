#!/usr/bin/env bash
# Benchmark `rdsconn audit` against the equivalent AWS CLI loop on moto with
# 500 instances. Prints the Markdown report for BENCHMARKS.md.
#   scripts/bench-audit.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/aws ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
if [ ! -x /usr/bin/time ]; then   # GNU time measures peak RSS
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -qq time >/dev/null; else sudo apt-get install -y -qq time >/dev/null; fi
fi
cargo build --release --locked --quiet
exec .venv/bin/python scripts/bench_audit.py target/release/rdsconn .venv/bin/aws "${1:-1}"
