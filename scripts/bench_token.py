"""Benchmark: `rdsconn token` vs `aws rds generate-db-auth-token`.

Same inputs, environment credentials, alternating runs, medians of wall
time (direct runs) and peak RSS (separate runs under GNU time: the
ru_maxrss a Python parent gets from wait4 includes Python's own high-water
mark, carried over the child's vfork+exec, so it cannot measure a small
process). Also times the no-credentials failure of
rdsconn against an IMDS endpoint that never answers. Prints a Markdown
report for BENCHMARKS.md.

Usage: python scripts/bench_token.py RDSCONN AWS [RUNS]
"""

import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HOST = "mydb.abc123.eu-west-1.rds.amazonaws.com"
ARGS_RDSCONN = ["token", "--host", HOST, "--port", "5432", "--user", "app"]
ARGS_AWS = ["rds", "generate-db-auth-token", "--hostname", HOST, "--port", "5432",
            "--username", "app", "--region", "eu-west-1"]


GNU_TIME = "/usr/bin/time"


def run(cmd, env):
    """Wall seconds, exit code, stdout of one run."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, proc.returncode, proc.stdout.decode()


def peak_rss_mib(cmd, env):
    """Peak RSS of one run, measured by GNU time (a small forked parent)."""
    proc = subprocess.run([GNU_TIME, "-f", "RSS-KiB %M", *cmd], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL)
    last = proc.stderr.decode().strip().splitlines()[-1]
    if proc.returncode != 0 or not last.startswith("RSS-KiB "):
        sys.exit(f"{cmd[0]} failed under {GNU_TIME}: {proc.stderr.decode()!r}")
    return int(last.split()[1]) / 1024


def main():
    rdsconn, aws = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    home = tempfile.mkdtemp()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": home,
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    results = {"rdsconn": [], "aws": []}
    # Warm the page cache for both, then alternate.
    run([rdsconn, *ARGS_RDSCONN], env)
    run([aws, *ARGS_AWS], env)
    for _ in range(runs):
        for name, cmd in (("rdsconn", [rdsconn, *ARGS_RDSCONN]), ("aws", [aws, *ARGS_AWS])):
            wall, code, out = run(cmd, env)
            if code != 0 or "X-Amz-Signature=" not in out:
                sys.exit(f"{name} failed (exit {code}): {out!r}")
            results[name].append((wall, peak_rss_mib(cmd, env)))

    # No credentials at all; IMDS is a listener that never answers.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(64)
    nocreds = {"PATH": env["PATH"], "HOME": home,
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:%d" % blackhole.getsockname()[1]}
    fail = []
    for _ in range(5):
        wall, code, _ = run([rdsconn, *ARGS_RDSCONN], nocreds)
        if code != 3:
            sys.exit(f"rdsconn without credentials exited {code}, expected 3")
        fail.append(wall)

    med = {k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v), max(r for _, r in v))
           for k, v in results.items()}
    ratio = med["aws"][0] / med["rdsconn"][0]
    aws_version = subprocess.run([aws, "--version"], capture_output=True, text=True, env=env)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
          f"{runs} alternating runs each; {(aws_version.stdout or aws_version.stderr).strip()}")
    print()
    print("| command | median wall | median peak RSS | max peak RSS |")
    print("|---|---|---|---|")
    print(f"| `rdsconn token` | {med['rdsconn'][0] * 1000:.1f} ms | {med['rdsconn'][1]:.1f} MiB | {med['rdsconn'][2]:.1f} MiB |")
    print(f"| `aws rds generate-db-auth-token` | {med['aws'][0] * 1000:.1f} ms | {med['aws'][1]:.1f} MiB | {med['aws'][2]:.1f} MiB |")
    print()
    print(f"speed-up: {ratio:.0f}x (median wall, AWS CLI / rdsconn)")
    print(f"no credentials, IMDS black hole: rdsconn exits 3 after {statistics.median(fail) * 1000:.0f} ms "
          f"(median of 5, max {max(fail) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
