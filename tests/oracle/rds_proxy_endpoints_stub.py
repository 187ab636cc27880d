"""DescribeDBProxyEndpoints, which moto does not implement, in front of moto.

Usage: rds_proxy_endpoints_stub.py MOTO_URL ENDPOINTS_JSON
ENDPOINTS_JSON: {NAME: {"proxy": PROXY_NAME, "endpoint": ADDRESS, "role": "READ_ONLY"}}
Prints the port it listens on (127.0.0.1), answers DescribeDBProxyEndpoints
from ENDPOINTS_JSON (DBProxyEndpointNotFoundFault for other names), passes
every other request to moto unchanged, and exits when stdin closes.
"""

import http.server
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from xml.sax.saxutils import escape

MOTO = sys.argv[1]
ENDPOINTS = json.loads(sys.argv[2])
NS = "http://rds.amazonaws.com/doc/2014-10-31/"


def describe(name):
    e = ENDPOINTS.get(name)
    if e is None:
        return 404, (
            f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type>'
            "<Code>DBProxyEndpointNotFoundFault</Code>"
            f"<Message>DBProxyEndpoint {escape(name)} not found.</Message></Error>"
            "<RequestId>stub</RequestId></ErrorResponse>"
        )
    return 200, (
        f'<DescribeDBProxyEndpointsResponse xmlns="{NS}"><DescribeDBProxyEndpointsResult>'
        "<DBProxyEndpoints><member>"
        f"<DBProxyEndpointName>{escape(name)}</DBProxyEndpointName>"
        f"<DBProxyName>{escape(e['proxy'])}</DBProxyName>"
        f"<Endpoint>{escape(e['endpoint'])}</Endpoint>"
        "<Status>available</Status>"
        f"<TargetRole>{escape(e.get('role', 'READ_WRITE'))}</TargetRole>"
        "<IsDefault>false</IsDefault>"
        "</member></DBProxyEndpoints></DescribeDBProxyEndpointsResult>"
        "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata>"
        "</DescribeDBProxyEndpointsResponse>"
    )


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, headers, data):
        self.send_response(code)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        params = urllib.parse.parse_qs(body.decode())
        if params.get("Action") == ["DescribeDBProxyEndpoints"]:
            code, xml = describe(params.get("DBProxyEndpointName", [""])[0])
            self.reply(code, [("Content-Type", "text/xml")], xml.encode())
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(MOTO + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as resp:
                self.reply(resp.status, resp.headers.items(), resp.read())
        except urllib.error.HTTPError as e:
            self.reply(e.code, e.headers.items(), e.read())


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()


if __name__ == "__main__":
    main()
