"""A stand-in `ssh` whose forward socket exists before it listens, as a
real ssh's does for a moment (bind, then listen).

Called as rdsconn calls ssh (… -L SOCKET:HOST:PORT … -- BASTION); makes
SOCKET, waits 300 ms, then listens and forwards every connection to
127.0.0.1:$SLOW_SSH_FORWARD (the harness server standing in for the
endpoint), until killed.
"""

import os
import socket
import sys
import threading
import time

args = sys.argv[1:]
local = args[args.index("-L") + 1].split(":")[0]
upstream = int(os.environ["SLOW_SSH_FORWARD"])

listener = socket.socket(socket.AF_UNIX)
listener.bind(local)
time.sleep(0.3)
listener.listen(16)


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


while True:
    client, _ = listener.accept()
    far = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pipe, args=(client, far), daemon=True).start()
    threading.Thread(target=pipe, args=(far, client), daemon=True).start()
