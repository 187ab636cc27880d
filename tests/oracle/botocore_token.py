"""The oracle for `rdsconn token`: botocore's generate_db_auth_token, and
for Aurora DSQL generate_db_connect_auth_token /
generate_db_connect_admin_auth_token.

Reads one JSON case per line on stdin:
  {"host", "port", "user", "region", "access_key", "secret_key",
   "session_token" (optional), and "time" (unix seconds) or "amz_date"
   (X-Amz-Date form, 20231114T221320Z)}
A DSQL case has "dsql": true, "admin" (bool) and "expires_in" (seconds)
instead of "port" and "user".
and writes one JSON line {"token": ...} per case, signed at exactly that
second. Shared AWS config files are ignored so only the case's credentials
count.
"""

import datetime
import json
import os
import sys
from unittest import mock

os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

import botocore.session  # noqa: E402


def main():
    clients = {}
    for line in sys.stdin:
        case = json.loads(line)
        service = "dsql" if case.get("dsql") else "rds"
        key = (service, case["access_key"], case["secret_key"], case.get("session_token"), case["region"])
        client = clients.get(key)
        if client is None:
            session = botocore.session.Session()
            session.set_credentials(case["access_key"], case["secret_key"], case.get("session_token"))
            client = session.create_client(service, region_name=case["region"])
            clients[key] = client
        if "amz_date" in case:
            when = datetime.datetime.strptime(case["amz_date"], "%Y%m%dT%H%M%SZ")
        else:
            when = datetime.datetime.fromtimestamp(case["time"], datetime.timezone.utc).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            if service == "dsql":
                generate = (
                    client.generate_db_connect_admin_auth_token
                    if case["admin"]
                    else client.generate_db_connect_auth_token
                )
                token = generate(case["host"], case["region"], case["expires_in"])
            else:
                token = client.generate_db_auth_token(
                    DBHostname=case["host"], Port=case["port"], DBUsername=case["user"], Region=case["region"]
                )
        print(json.dumps({"token": token}), flush=True)


if __name__ == "__main__":
    main()
