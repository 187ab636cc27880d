"""A boto3 client of the test moto server (fixed test credentials), shared
by the moto_*.py setup scripts."""

import boto3


def client(service, url, region):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
