#!/usr/bin/env bash
# Benchmark the release binary: stripped size and `rdsconn --version`
# start-up, against `aws --version` (the AWS CLI, in .venv) and
# `psql --version`, same run. Prints the Markdown table for BENCHMARKS.md.
#   scripts/bench-release.sh [RUNS]
#   scripts/bench-release.sh 200 thin=/tmp/a/rdsconn fat=/tmp/b/rdsconn   # compare builds
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/aws ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-test.txt
fi
runs=${1:-200}
shift || true
builds=("$@")
if [ "${#builds[@]}" -eq 0 ]; then
  cargo build --release --locked --quiet
  target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  builds=("rdsconn=$target_dir/release/rdsconn")
fi
exec .venv/bin/python scripts/bench_release.py "$runs" "${builds[@]}" -- .venv/bin/aws "$(command -v psql)"
