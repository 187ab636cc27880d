"""The RDS calls moto does not implement, answered in front of moto:
DescribeDBProxyEndpoints, DescribeCertificates, DescribePendingMaintenanceActions,
DescribeDBEngineVersions, DescribeEngineDefaultParameters,
DescribeEngineDefaultClusterParameters.

Usage: rds_stub.py MOTO_URL STUB_JSON
STUB_JSON: {"endpoints": {NAME: {"proxy": PROXY_NAME, "endpoint": ADDRESS, "role": "READ_ONLY"}},
            "certificates": {CA_ID: VALID_TILL_ISO8601},
            "pending": {RESOURCE_ARN: [ACTION, ...]},
            "engine_versions": {"ENGINE VERSION": {"rotation_without_restart": bool,
                                                   "family": PARAMETER_GROUP_FAMILY}},
            "engine_defaults": {FAMILY: {NAME: VALUE}},
            "cluster_engine_defaults": {FAMILY: {NAME: VALUE}}}
            (every key optional; an engine version not listed is answered with an
            empty list, as RDS answers an unknown version; a family not listed has
            no parameters)
Prints the port it listens on (127.0.0.1), answers those calls from STUB_JSON
(DBProxyEndpointNotFoundFault for other endpoint names), passes every other
request to moto unchanged, and exits when stdin closes. Lists come in pages of
MaxRecords (default 100) with a Marker, as RDS pages them.
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
STUB = json.loads(sys.argv[2])
ENDPOINTS = STUB.get("endpoints", {})
NS = "http://rds.amazonaws.com/doc/2014-10-31/"


def page(items, params):
    """One page of items and the next Marker (None at the end)."""
    size = int(params.get("MaxRecords", ["100"])[0])
    start = int(params.get("Marker", ["0"])[0] or 0)
    chunk = items[start:start + size]
    nxt = start + size if start + size < len(items) else None
    return chunk, nxt


def marker(nxt):
    return f"<Marker>{nxt}</Marker>" if nxt is not None else ""


def certificates(params):
    items = sorted(STUB.get("certificates", {}).items())
    chunk, nxt = page(items, params)
    members = "".join(
        f"<Certificate><CertificateIdentifier>{escape(i)}</CertificateIdentifier>"
        "<CertificateType>CA</CertificateType>"
        f"<ValidFrom>2021-05-25T00:00:00Z</ValidFrom><ValidTill>{escape(t)}</ValidTill></Certificate>"
        for i, t in chunk
    )
    return 200, (
        f'<DescribeCertificatesResponse xmlns="{NS}"><DescribeCertificatesResult>'
        f"<Certificates>{members}</Certificates>{marker(nxt)}</DescribeCertificatesResult>"
        "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></DescribeCertificatesResponse>"
    )


def pending(params):
    items = sorted(STUB.get("pending", {}).items())
    chunk, nxt = page(items, params)
    members = "".join(
        f"<ResourcePendingMaintenanceActions><ResourceIdentifier>{escape(arn)}</ResourceIdentifier>"
        "<PendingMaintenanceActionDetails>"
        + "".join(
            f"<PendingMaintenanceAction><Action>{escape(a)}</Action>"
            "<Description>stub</Description></PendingMaintenanceAction>"
            for a in actions
        )
        + "</PendingMaintenanceActionDetails></ResourcePendingMaintenanceActions>"
        for arn, actions in chunk
    )
    return 200, (
        f'<DescribePendingMaintenanceActionsResponse xmlns="{NS}"><DescribePendingMaintenanceActionsResult>'
        f"<PendingMaintenanceActions>{members}</PendingMaintenanceActions>{marker(nxt)}"
        "</DescribePendingMaintenanceActionsResult>"
        "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></DescribePendingMaintenanceActionsResponse>"
    )


def engine_versions(params):
    engine = params.get("Engine", [""])[0]
    version = params.get("EngineVersion", [""])[0]
    known = STUB.get("engine_versions", {})
    members = ""
    key = f"{engine} {version}"
    if key in known:
        v = known[key]
        rotation = v.get("rotation_without_restart")
        members = (
            f"<DBEngineVersion><Engine>{escape(engine)}</Engine>"
            f"<EngineVersion>{escape(version)}</EngineVersion>"
            + (f"<DBParameterGroupFamily>{escape(v['family'])}</DBParameterGroupFamily>" if "family" in v else "")
            + (f"<SupportsCertificateRotationWithoutRestart>{str(rotation).lower()}"
               "</SupportsCertificateRotationWithoutRestart>" if rotation is not None else "")
            + "</DBEngineVersion>"
        )
    return 200, (
        f'<DescribeDBEngineVersionsResponse xmlns="{NS}"><DescribeDBEngineVersionsResult>'
        f"<DBEngineVersions>{members}</DBEngineVersions></DescribeDBEngineVersionsResult>"
        "<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></DescribeDBEngineVersionsResponse>"
    )


def engine_defaults(params, action, key):
    """One page of a family's engine defaults (2 parameters a page, so that
    paging is exercised), the next Marker inside EngineDefaults."""
    family = params.get("DBParameterGroupFamily", [""])[0]
    items = sorted(STUB.get(key, {}).get(family, {}).items())
    chunk, nxt = page(items, {"MaxRecords": ["2"], "Marker": params.get("Marker", ["0"])})
    members = "".join(
        f"<Parameter><ParameterName>{escape(n)}</ParameterName>"
        f"<ParameterValue>{escape(v)}</ParameterValue><Source>engine-default</Source></Parameter>"
        for n, v in chunk
    )
    return 200, (
        f'<{action}Response xmlns="{NS}"><{action}Result><EngineDefaults>'
        f"<DBParameterGroupFamily>{escape(family)}</DBParameterGroupFamily>"
        f"<Parameters>{members}</Parameters>{marker(nxt)}</EngineDefaults></{action}Result>"
        f"<ResponseMetadata><RequestId>stub</RequestId></ResponseMetadata></{action}Response>"
    )


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
        action = params.get("Action", [""])[0]
        answer = None
        if action == "DescribeDBProxyEndpoints":
            answer = describe(params.get("DBProxyEndpointName", [""])[0])
        elif action == "DescribeCertificates":
            answer = certificates(params)
        elif action == "DescribePendingMaintenanceActions":
            answer = pending(params)
        elif action == "DescribeDBEngineVersions":
            answer = engine_versions(params)
        elif action == "DescribeEngineDefaultParameters":
            answer = engine_defaults(params, action, "engine_defaults")
        elif action == "DescribeEngineDefaultClusterParameters":
            answer = engine_defaults(params, action, "cluster_engine_defaults")
        if answer is not None:
            code, xml = answer
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
