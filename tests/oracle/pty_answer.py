"""Runs a command on a new pseudo-terminal (its controlling terminal), waits
for PROMPT in its output, types ANSWER and a newline, and relays the rest.
Exits with the command's status; the terminal transcript goes to stdout.

    python3 pty_answer.py PROMPT ANSWER -- COMMAND [ARG...]
"""

import os
import pty
import select
import sys
import time


def main():
    prompt, answer = sys.argv[1].encode(), sys.argv[2].encode()
    command = sys.argv[sys.argv.index("--") + 1 :]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    transcript, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        transcript += chunk
        if not answered and prompt in transcript:
            os.write(fd, answer + b"\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(transcript.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status) if answered else 99)


main()
