"""An RDS-like IAM token check for the test servers, run by pam_exec.

The test MariaDB and PostgreSQL servers authenticate IAM users through PAM;
pam_exec (with expose_authtok) runs this script with the password the
client sent on stdin (NUL-terminated) and the database user in PAM_USER.
It accepts the password only if it is a SigV4 presigned `connect` URL that
RDS would accept: signed for ENDPOINT:PORT, this user, this region and the
rds-db service, with the test access key's secret, not expired and not from
the future. It uses only the Python standard library, so it checks
rdsconn's tokens independently of rdsconn and of botocore.

Usage: pam_verify_token.py ENDPOINT PORT REGION ACCESS_KEY SECRET_FILE
Exit 0 accepts; any other exit rejects (the reason goes to stderr, which
pam_exec's log= option keeps).
"""

import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse


def reject(reason):
    print(f"rejected: {reason}", file=sys.stderr)
    sys.exit(1)


def main():
    endpoint, port, region, access_key, secret_file = sys.argv[1:6]
    with open(secret_file, encoding="ascii") as f:
        secret = f.read().strip()
    token = sys.stdin.buffer.read().split(b"\0", 1)[0].decode("ascii", "replace").strip()
    user = os.environ.get("PAM_USER", "")

    host, sep, query = token.partition("/?")
    if not sep:
        reject("not a presigned URL")
    if host != f"{endpoint}:{port}":
        reject(f"signed for {host!r}, expected {endpoint}:{port}")
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    params = dict(pairs)
    if len(params) != len(pairs):
        reject("repeated query parameter")
    for key, want in [
        ("Action", "connect"),
        ("DBUser", user),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-SignedHeaders", "host"),
    ]:
        if params.get(key) != want:
            reject(f"{key}={params.get(key)!r}, expected {want!r}")

    amz_date = params.get("X-Amz-Date", "")
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    expires = int(params.get("X-Amz-Expires", "0"))
    now = datetime.datetime.now(datetime.timezone.utc)
    if not 0 < expires <= 900:
        reject(f"X-Amz-Expires={expires}")
    if signed_at - now > datetime.timedelta(minutes=5):
        reject("signed in the future")
    if now > signed_at + datetime.timedelta(seconds=expires):
        reject("expired")

    scope = f"{amz_date[:8]}/{region}/rds-db/aws4_request"
    if params.get("X-Amz-Credential") != f"{access_key}/{scope}":
        reject(f"credential {params.get('X-Amz-Credential')!r}")

    def enc(s):
        return urllib.parse.quote(s, safe="-_.~")

    canonical_query = "&".join(
        f"{enc(k)}={enc(v)}" for k, v in sorted(pairs) if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [
            "GET",
            "/",
            canonical_query,
            f"host:{host}",
            "",
            "host",
            hashlib.sha256(b"").hexdigest(),
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in [amz_date[:8], region, "rds-db", "aws4_request"]:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params.get("X-Amz-Signature", "")):
        reject("signature mismatch")
    sys.exit(0)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, IndexError, OSError) as e:
        reject(f"malformed: {e}")
