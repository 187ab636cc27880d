"""Benchmark: the release binary's size and `--version` start-up time.

For each build given (a label and a path): the file size (stripped as
built), and the median and p90 wall time of `BINARY --version` over RUNS
alternating runs; the AWS CLI's `aws --version` and `psql --version` run in
the same loop as the peers a user would start instead. Prints a Markdown
table for BENCHMARKS.md.

Usage: python scripts/bench_release.py RUNS LABEL=BINARY... [-- PEER...]
"""

import os
import statistics
import subprocess
import sys
import time


def wall(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} --version failed: {proc.stderr.decode()[:200]}")
    return elapsed


def main(argv):
    runs = int(argv[0])
    builds, peers = [], []
    rest = argv[1:]
    if "--" in rest:
        at = rest.index("--")
        rest, peers = rest[:at], rest[at + 1:]
    for item in rest:
        label, _, path = item.rpartition("=")
        builds.append((label, path))
    rows = [(label, [path, "--version"], os.path.getsize(path)) for label, path in builds]
    rows += [(os.path.basename(p), [p, "--version"], None) for p in peers]
    times = {label: [] for label, _, _ in rows}
    for label, cmd, _ in rows:  # warm the page cache
        wall(cmd)
    for _ in range(runs):
        for label, cmd, _ in rows:
            times[label].append(wall(cmd))
    print(f"| build | size | `--version` median | p90 |")
    print("|---|---:|---:|---:|")
    for label, _, size in rows:
        t = sorted(times[label])
        p90 = t[int(len(t) * 0.9) - 1]
        size_text = f"{size / 1e6:.1f} MB" if size is not None else "—"
        print(f"| {label} | {size_text} | {statistics.median(t) * 1e3:.2f} ms | {p90 * 1e3:.2f} ms |")
    print(f"\n{runs} runs each, alternating; wall time from Python's "
          "subprocess.run, the same for every row.")


if __name__ == "__main__":
    main(sys.argv[1:])
