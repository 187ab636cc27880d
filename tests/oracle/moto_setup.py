"""Creates RDS instances and clusters in a moto server for rdsconn's tests,
with boto3 (independent of rdsconn), and prints what moto then reports.

Usage: moto_setup.py ENDPOINT_URL REGION < spec.json
spec: a list of
  {"instance": ID, "engine": E, "iam": bool, "version": V, "member_of": CLUSTER,
   "parameter_group": G, "public": bool, "ca": CA_ID, "managed_secret": bool,
   "secret_rotation": bool (turns the managed secret's rotation on, every 7 days)}
  (all but instance and engine optional; clusters are created first when listed first)
  {"cluster": ID, "engine": E, "iam": bool, "parameter_group": G, "version": V}
  {"parameter_group": G, "family": F, "parameters": {NAME: VALUE}, "cluster": bool}
  {"instances": PREFIX, "count": N, "engine": E}
  {"proxy": NAME, "engine_family": "POSTGRESQL"|"MYSQL", "iam": "REQUIRED"|"DISABLED",
   "require_tls": bool} (in a VPC and subnet made for it)
Existing identifiers are left as they are. Prints a JSON object: identifier
-> {"endpoint", "port", "reader_endpoint", "engine", "iam", "resource_id", "arn"} for everything in
the region, from DescribeDBInstances / DescribeDBClusters, and for proxies (DescribeDBProxies)
{"proxy": true, "endpoint", "engine_family", "iam", "require_tls", "role_arn", "arn", "status"}.
"""

import json
import sys

from motoclient import client


def main():
    url, region = sys.argv[1:3]
    spec = json.load(sys.stdin)
    rds = client("rds", url, region)

    def instance(ident, engine, iam=False, version=None, member_of=None, item=None):
        item = item or {}
        extra = {"EngineVersion": version} if version else {}
        if member_of:
            extra["DBClusterIdentifier"] = member_of
        if "parameter_group" in item:
            extra["DBParameterGroupName"] = item["parameter_group"]
        if "public" in item:
            extra["PubliclyAccessible"] = item["public"]
        if "ca" in item:
            extra["CACertificateIdentifier"] = item["ca"]
        if item.get("managed_secret"):
            extra["ManageMasterUserPassword"] = True
        else:
            extra["MasterUserPassword"] = "password-1"
        try:
            rds.create_db_instance(
                **extra,
                DBInstanceIdentifier=ident,
                Engine=engine,
                DBInstanceClass="db.t3.micro",
                MasterUsername="admin",
                AllocatedStorage=20,
                EnableIAMDatabaseAuthentication=iam,
            )
        except rds.exceptions.DBInstanceAlreadyExistsFault:
            pass
        if item.get("secret_rotation"):
            d = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
            sm = client("secretsmanager", url, region)
            try:
                sm.rotate_secret(
                    SecretId=d["MasterUserSecret"]["SecretArn"],
                    RotationRules={"AutomaticallyAfterDays": 7},
                    RotateImmediately=False,
                )
            except sm.exceptions.InvalidRequestException:
                pass  # rotating already (made by an earlier run)

    subnets = []

    def proxy(item):
        if not subnets:
            ec2 = client("ec2", url, region)
            vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
            subnets.append(ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"])
        try:
            rds.create_db_proxy(
                DBProxyName=item["proxy"],
                EngineFamily=item["engine_family"],
                Auth=[
                    {
                        "AuthScheme": "SECRETS",
                        "SecretArn": f"arn:aws:secretsmanager:{region}:123456789012:secret:{item['proxy']}",
                        "IAMAuth": item.get("iam", "DISABLED"),
                    }
                ],
                RoleArn=f"arn:aws:iam::123456789012:role/{item['proxy']}-role",
                VpcSubnetIds=subnets,
                RequireTLS=item.get("require_tls", True),
            )
        except rds.exceptions.DBProxyAlreadyExistsFault:
            pass

    for item in spec:
        if "instance" in item:
            instance(
                item["instance"],
                item["engine"],
                item.get("iam", False),
                item.get("version"),
                item.get("member_of"),
                item,
            )
        elif "parameter_group" in item and "family" in item:
            params = [
                {"ParameterName": k, "ParameterValue": v, "ApplyMethod": "immediate"}
                for k, v in item.get("parameters", {}).items()
            ]
            try:
                if item.get("cluster"):
                    rds.create_db_cluster_parameter_group(
                        DBClusterParameterGroupName=item["parameter_group"],
                        DBParameterGroupFamily=item["family"], Description="test")
                    rds.modify_db_cluster_parameter_group(
                        DBClusterParameterGroupName=item["parameter_group"], Parameters=params)
                else:
                    rds.create_db_parameter_group(
                        DBParameterGroupName=item["parameter_group"],
                        DBParameterGroupFamily=item["family"], Description="test")
                    rds.modify_db_parameter_group(
                        DBParameterGroupName=item["parameter_group"], Parameters=params)
            except (rds.exceptions.DBParameterGroupAlreadyExistsFault, rds.exceptions.ClientError):
                pass
        elif "cluster" in item:
            extra = {}
            if "parameter_group" in item:
                extra["DBClusterParameterGroupName"] = item["parameter_group"]
            if "version" in item:
                extra["EngineVersion"] = item["version"]
            try:
                rds.create_db_cluster(
                    **extra,
                    DBClusterIdentifier=item["cluster"],
                    Engine=item["engine"],
                    MasterUsername="admin",
                    MasterUserPassword="password-1",
                    EnableIAMDatabaseAuthentication=item.get("iam", False),
                )
            except rds.exceptions.DBClusterAlreadyExistsFault:
                pass
        elif "proxy" in item:
            proxy(item)
        else:
            for i in range(item["count"]):
                instance(f"{item['instances']}-{i:04d}", item["engine"])

    found = {}
    for page in rds.get_paginator("describe_db_instances").paginate():
        for d in page["DBInstances"]:
            found[d["DBInstanceIdentifier"]] = {
                "endpoint": d["Endpoint"]["Address"],
                "port": d["Endpoint"]["Port"],
                "reader_endpoint": None,
                "engine": d["Engine"],
                "iam": d["IAMDatabaseAuthenticationEnabled"],
                "resource_id": d["DbiResourceId"],
                "arn": d["DBInstanceArn"],
            }
    for page in rds.get_paginator("describe_db_clusters").paginate():
        for c in page["DBClusters"]:
            found[c["DBClusterIdentifier"]] = {
                "endpoint": c["Endpoint"],
                "port": c["Port"],
                "reader_endpoint": c.get("ReaderEndpoint"),
                "engine": c["Engine"],
                "iam": c["IAMDatabaseAuthenticationEnabled"],
                "resource_id": c["DbClusterResourceId"],
                "arn": c["DBClusterArn"],
            }
    for p in rds.describe_db_proxies()["DBProxies"]:
        found[p["DBProxyName"]] = {
            "proxy": True,
            "endpoint": p["Endpoint"],
            "engine_family": p["EngineFamily"],
            "iam": p["Auth"][0].get("IAMAuth"),
            "require_tls": p["RequireTLS"],
            "role_arn": p.get("RoleArn"),
            "arn": p["DBProxyArn"],
            "status": p["Status"],
        }
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main()
