"""PAM check for the harness's directory users: run by pam_exec with
expose_authtok, it accepts exactly the password stored in the file named
by argv[1] and logs each attempt (service, user, result) to stdout, which
pam_exec appends to its log file."""

import os
import sys

with open(sys.argv[1], "rb") as f:
    expected = f.read()
given = sys.stdin.buffer.read().rstrip(b"\0")
ok = given == expected
print(
    f"attempt service={os.environ.get('PAM_SERVICE', '?')} "
    f"user={os.environ.get('PAM_USER', '?')} {'ok' if ok else 'bad'}",
    flush=True,
)
sys.exit(0 if ok else 1)
