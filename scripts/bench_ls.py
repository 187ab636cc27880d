"""Benchmark: `rdsconn ls` vs `aws rds describe-db-instances` + `describe-db-clusters`
against moto in server mode with 500 instances (and a few clusters).

Both tools list every page; rdsconn fetches instances and clusters in one
process (concurrently), the AWS CLI needs two invocations, timed together.
Medians of wall time over alternating runs; peak RSS from GNU time. moto
does most of the work (it renders ~500 instances as XML per call), so the
comparison is about the client's overhead on top of the same API.

Usage: python scripts/bench_ls.py RDSCONN AWS [RUNS]
"""

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench_token import peak_rss_mib, run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COUNT = 500


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    """moto in server mode on a free port of 127.0.0.1, answering: (process, URL)."""
    venv_bin = os.path.dirname(sys.executable)
    port = free_port()
    moto = subprocess.Popen([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return moto, f"http://127.0.0.1:{port}"


def cli_env(url):
    """The environment both tools run in: test credentials, `url` for every
    AWS API, a fresh HOME, no configuration files, no IMDS."""
    return {"PATH": os.environ["PATH"], "HOME": tempfile.mkdtemp(), "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def main():
    rdsconn, aws = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    moto, url = start_moto()
    try:
        spec = [{"instances": "db", "count": COUNT, "engine": "postgres"},
                {"cluster": "orders", "engine": "aurora-mysql", "iam": True},
                {"cluster": "events", "engine": "aurora-postgresql"}]
        setup = subprocess.run([sys.executable, os.path.join(ROOT, "tests/oracle/moto_setup.py"), url,
                                "us-east-1"], input=json.dumps(spec).encode(), capture_output=True,
                               check=True)
        total = len(json.loads(setup.stdout))
        env = cli_env(url)
        ours = [rdsconn, "ls", "--output", "json"]
        # AWS CLI v1 reads neither AWS_REGION nor AWS_ENDPOINT_URL: flags.
        common = ["--output", "json", "--region", "us-east-1", "--endpoint-url", url]
        theirs = [[aws, "rds", "describe-db-instances", *common],
                  [aws, "rds", "describe-db-clusters", *common]]
        # Both must see everything.
        _, code, out = run(ours, env)
        assert code == 0 and len(json.loads(out)["databases"]) == total, (code, out[:200])
        n_aws = sum(len(json.loads(run(c, env)[2])[k]) for c, k in
                    zip(theirs, ["DBInstances", "DBClusters"]))
        assert n_aws == total, n_aws
        t_ours, t_theirs = [], []
        for _ in range(runs):
            t_ours.append(run(ours, env)[0])
            t_theirs.append(sum(run(c, env)[0] for c in theirs))
        rss_ours = statistics.median(peak_rss_mib(ours, env) for _ in range(3))
        rss_theirs = statistics.median(max(peak_rss_mib(c, env) for c in theirs) for _ in range(3))
    finally:
        moto.terminate()
        moto.wait()
    mo, mt = statistics.median(t_ours) * 1000, statistics.median(t_theirs) * 1000
    print(f"### `rdsconn ls` vs the AWS CLI, {total} databases in moto ({runs} runs, "
          f"{platform.machine()}, {os.cpu_count()} cores)\n")
    print("| tool | median wall | peak RSS |")
    print("|---|---|---|")
    print(f"| `rdsconn ls --output json` | {mo:.0f} ms | {rss_ours:.1f} MiB |")
    print(f"| `aws rds describe-db-instances` + `describe-db-clusters` | {mt:.0f} ms | "
          f"{rss_theirs:.1f} MiB (larger of the two) |")
    print(f"\nratio rdsconn / aws CLI (wall): {mo / mt:.2f}")


if __name__ == "__main__":
    main()
