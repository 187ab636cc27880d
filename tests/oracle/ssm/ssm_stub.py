"""A stand-in for the AWS Systems Manager API (JSON 1.1), for --via ssm://.

Usage: ssm_stub.py LOG INSTANCES_JSON
INSTANCES_JSON: {"i-0123456789abcdef0": {"Name": "bastion"}, ...} (the
instances SSM manages, with their tags)
Prints the port it listens on (127.0.0.1) and answers StartSession (for the
instances it manages) and TerminateSession; every
request (its X-Amz-Target, whether it carried a SigV4 Authorization
header, and its JSON body) is appended to LOG as one JSON line. Exits when
stdin closes.
"""

import http.server
import json
import sys
import threading

LOG = sys.argv[1]
INSTANCES = json.loads(sys.argv[2])
LOCK = threading.Lock()


def start(body):
    target = body.get("Target", "")
    if target not in INSTANCES:
        return 400, {"__type": "com.amazonaws.ssm#InvalidTarget", "message": f"{target} is not connected"}
    return 200, {
        "SessionId": "rdsconn-test-0123456789",
        "TokenValue": "stand-in-token",
        "StreamUrl": "wss://ssmmessages.invalid/v1/data-channel/rdsconn-test-0123456789",
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        action = self.headers.get("X-Amz-Target", "")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        with LOCK, open(LOG, "a") as log:
            log.write(json.dumps({
                "target": action,
                "signed": self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"),
                "body": body,
            }) + "\n")
        if action == "AmazonSSM.StartSession":
            status, answer = start(body or {})
        elif action == "AmazonSSM.TerminateSession":
            status, answer = 200, {"SessionId": (body or {}).get("SessionId", "")}
        else:
            status, answer = 400, {"__type": "UnknownOperationException", "message": action}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
