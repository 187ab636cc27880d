#!/usr/bin/env bash
# What the benchmarks against moto share: the test venv (moto, the AWS
# CLI), GNU time for peak RSS, a release build; then runs the Python
# benchmark SCRIPT with the release binary, the AWS CLI and RUNS.
#   scripts/bench-moto.sh SCRIPT RUNS
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
exec .venv/bin/python "$1" target/release/rdsconn .venv/bin/aws "$2"
