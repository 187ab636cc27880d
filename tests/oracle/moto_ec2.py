"""Creates tagged EC2 instances in a moto server for rdsconn's
`--via ssm://tag:KEY=VALUE` tests, with boto3 (independent of rdsconn), and
prints every instance of the region with its state and tags.

Usage: moto_ec2.py ENDPOINT_URL REGION < spec.json
spec: a list of {"tags": {"Name": "bastion"}, "count": N, "state": "running"|"stopped"}
(count defaults to 1, state to running). Instances whose tags and state are
already there are not created again. Prints a JSON object:
instance id -> {"state": STATE, "tags": {KEY: VALUE}}.
"""

import json
import sys

from motoclient import client


def main():
    url, region = sys.argv[1:3]
    spec = json.load(sys.stdin)
    ec2 = client("ec2", url, region)

    def region_instances():
        found = {}
        for page in ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for i in reservation["Instances"]:
                    found[i["InstanceId"]] = {
                        "state": i["State"]["Name"],
                        "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                    }
        return found

    image = ec2.describe_images()["Images"][0]["ImageId"]
    for want in spec:
        state = want.get("state", "running")
        have = [
            iid
            for iid, i in region_instances().items()
            if i["tags"] == want["tags"] and i["state"] == state
        ]
        missing = want.get("count", 1) - len(have)
        if missing <= 0:
            continue
        made = ec2.run_instances(
            ImageId=image,
            MinCount=missing,
            MaxCount=missing,
            TagSpecifications=[{
                "ResourceType": "instance",
                "Tags": [{"Key": k, "Value": v} for k, v in want["tags"].items()],
            }],
        )
        ids = [i["InstanceId"] for i in made["Instances"]]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=ids)
    json.dump(region_instances(), sys.stdout)


if __name__ == "__main__":
    main()
