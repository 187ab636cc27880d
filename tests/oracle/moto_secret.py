"""Secrets Manager (and RDS-managed master secrets) in a moto server for
rdsconn's tests, with boto3 (independent of rdsconn).

Usage: moto_secret.py ENDPOINT_URL < ops.json
ops: a list of
  {"op": "put", "region": R, "name": N, "value": TEXT}      create, or a new version
  {"op": "binary", "region": R, "name": N}                  a SecretBinary secret
  {"op": "managed", "region": R, "kind": "instance"|"cluster", "id": ID,
   "engine": E}                                             ManageMasterUserPassword=True
Prints a JSON list, one result per op: {"arn"} for secrets; for managed
databases {"arn", "status", "endpoint", "port", "master_user", "password"}
as DescribeDBInstances / DescribeDBClusters and GetSecretValue report them.
"""

import json
import sys

from motoclient import client


def main():
    url = sys.argv[1]
    out = []
    for op in json.load(sys.stdin):
        sm = client("secretsmanager", url, op["region"])
        if op["op"] == "put":
            try:
                arn = sm.create_secret(Name=op["name"], SecretString=op["value"])["ARN"]
            except sm.exceptions.ResourceExistsException:
                arn = sm.put_secret_value(SecretId=op["name"], SecretString=op["value"])["ARN"]
            out.append({"arn": arn})
        elif op["op"] == "binary":
            try:
                arn = sm.create_secret(Name=op["name"], SecretBinary=b"\x00\x01binary")["ARN"]
            except sm.exceptions.ResourceExistsException:
                arn = sm.describe_secret(SecretId=op["name"])["ARN"]
            out.append({"arn": arn})
        else:
            rds = client("rds", url, op["region"])
            if op["kind"] == "instance":
                try:
                    rds.create_db_instance(
                        DBInstanceIdentifier=op["id"],
                        Engine=op["engine"],
                        DBInstanceClass="db.t3.micro",
                        MasterUsername="admin",
                        ManageMasterUserPassword=True,
                        AllocatedStorage=20,
                        **({"DBName": op["dbname"]} if "dbname" in op else {}),
                    )
                except rds.exceptions.DBInstanceAlreadyExistsFault:
                    pass
                d = rds.describe_db_instances(DBInstanceIdentifier=op["id"])["DBInstances"][0]
                endpoint, port = d["Endpoint"]["Address"], d["Endpoint"]["Port"]
            else:
                try:
                    rds.create_db_cluster(
                        DBClusterIdentifier=op["id"],
                        Engine=op["engine"],
                        MasterUsername="admin",
                        ManageMasterUserPassword=True,
                        **({"DatabaseName": op["dbname"]} if "dbname" in op else {}),
                    )
                except rds.exceptions.DBClusterAlreadyExistsFault:
                    pass
                d = rds.describe_db_clusters(DBClusterIdentifier=op["id"])["DBClusters"][0]
                endpoint, port = d["Endpoint"], d["Port"]
            secret = d["MasterUserSecret"]
            value = json.loads(sm.get_secret_value(SecretId=secret["SecretArn"])["SecretString"])
            out.append(
                {
                    "arn": secret["SecretArn"],
                    "status": secret.get("SecretStatus"),
                    "endpoint": endpoint,
                    "port": port,
                    "master_user": d["MasterUsername"],
                    "password": value["password"],
                }
            )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
