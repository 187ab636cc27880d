"""Benchmark: `rdsconn audit` vs the equivalent AWS CLI loop, against moto in
server mode with 500 instances (with a stand-in for the calls moto lacks,
tests/oracle/rds_stub.py).

The AWS CLI side is what a shell script would do: list instances, clusters
and proxies, the CA certificates and pending maintenance once, then one
`describe-db-parameters` per database for its TLS parameter. rdsconn reads
each parameter group once, several at a time. Medians of wall time; the
AWS CLI loop (about 500 invocations) is timed once per run.

Usage: python scripts/bench_audit.py RDSCONN AWS [RUNS]
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench_ls import cli_env, start_moto
from bench_token import peak_rss_mib, run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COUNT = 500
GROUPS = 20


def main():
    rdsconn, aws = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    moto, moto_url = start_moto()
    stub = None
    try:
        spec = [{"parameter_group": f"pg-{g}", "family": "postgres14",
                 "parameters": {"rds.force_ssl": str(g % 2)}} for g in range(GROUPS)]
        spec += [{"instance": f"db-{i:04d}", "engine": "postgres", "version": "14.10",
                  "parameter_group": f"pg-{i % GROUPS}"} for i in range(COUNT)]
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/oracle/moto_setup.py"), moto_url,
                        "us-east-1"], input=json.dumps(spec).encode(), capture_output=True, check=True)
        stub = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests/oracle/rds_stub.py"), moto_url,
             json.dumps({"certificates": {"rds-ca-rsa2048-g1": "2061-05-19T19:06:26Z"}})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        url = f"http://127.0.0.1:{stub.stdout.readline().decode().strip()}"
        env = cli_env(url)
        ours = [rdsconn, "audit", "--output", "json"]
        common = ["--output", "json", "--region", "us-east-1", "--endpoint-url", url]

        def cli_loop():
            start = time.perf_counter()
            out = subprocess.run([aws, "rds", "describe-db-instances", *common], env=env,
                                 capture_output=True, check=True).stdout
            instances = json.loads(out)["DBInstances"]
            for extra in ("describe-db-clusters", "describe-db-proxies", "describe-certificates",
                          "describe-pending-maintenance-actions"):
                subprocess.run([aws, "rds", extra, *common], env=env, capture_output=True, check=True)
            unenforced = 0
            for d in instances:
                group = d["DBParameterGroups"][0]["DBParameterGroupName"]
                out = subprocess.run([aws, "rds", "describe-db-parameters", "--db-parameter-group-name",
                                      group, *common], env=env, capture_output=True, check=True).stdout
                values = [p.get("ParameterValue") for p in json.loads(out)["Parameters"]
                          if p["ParameterName"] == "rds.force_ssl"]
                unenforced += values[:1] != ["1"]
            return time.perf_counter() - start, len(instances), unenforced

        _, code, out = run(ours, env)
        doc = json.loads(out)
        assert code == 0 and doc["databases"] == COUNT, (code, out[:300])
        ours_unenforced = sum(f["check"] == "tls-not-enforced" for f in doc["findings"])
        t_ours, t_theirs = [], []
        for _ in range(runs):
            t_ours.append(run(ours, env)[0])
            wall, n, theirs_unenforced = cli_loop()
            assert n == COUNT and theirs_unenforced == ours_unenforced, (n, theirs_unenforced, ours_unenforced)
            t_theirs.append(wall)
        rss_ours = statistics.median(peak_rss_mib(ours, env) for _ in range(3))
    finally:
        if stub is not None:
            stub.stdin.close()
            stub.wait()
        moto.terminate()
        moto.wait()
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"### `rdsconn audit` vs an AWS CLI loop, {COUNT} instances, {GROUPS} parameter groups in moto "
          f"({runs} runs, {platform.machine()}, {os.cpu_count()} cores)\n")
    print("| tool | median wall | peak RSS |")
    print("|---|---|---|")
    print(f"| `rdsconn audit --output json` | {mo:.2f} s | {rss_ours:.1f} MiB |")
    print(f"| AWS CLI: 5 describe calls + `describe-db-parameters` per instance | {mt:.1f} s | - |")
    print(f"\nBoth found {ours_unenforced} instances without TLS enforced. "
          f"ratio AWS CLI loop / rdsconn (wall): {mt / mo:.0f}x")


if __name__ == "__main__":
    main()
