"""A real S3-compatible server for the tests: moto's server, as its own process over HTTP.

`enforce_auth=True` turns on moto's IAM checks once the fixture has created a user with S3
rights: from then on a wrong key id or secret is refused like AWS refuses it. (moto cannot
check presigned query-string signatures with IAM on, so presigned URLs are downloaded from a
server without it.)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from .procs import Proc, free_port, wait_http

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass
class S3Server:
    proc: Proc
    url: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"

    def client(self, **overrides: str):
        kw = dict(endpoint_url=self.url, region_name=self.region, aws_access_key_id=self.access_key_id,
                  aws_secret_access_key=self.secret_access_key)
        kw.update(overrides)
        return boto3.client("s3", config=Config(signature_version="s3v4"), **kw)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def create_public_bucket(self, name: str) -> str:
        """A bucket anyone may read (a bucket policy), as one behind S3_PUBLIC_BASE_URL would be."""
        self.create_bucket(name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                          "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]}
        self.client().put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        # Filtered here: moto's signature check trips over an encoded Prefix parameter.
        resp = self.client().list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in resp.get("Contents", []) if o["Key"].startswith(prefix))

    def request_config(self, bucket: str, **overrides: str) -> dict[str, str]:
        """The `s3` object of a gateway request that writes to this server."""
        cfg = {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
               "bucket_name": bucket, "endpoint_url": self.url, "region": self.region}
        cfg.update(overrides)
        return cfg


def start_s3_server(log: Path, *, enforce_auth: bool) -> S3Server:
    port = free_port()
    proc = Proc([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                {"PATH": "/usr/bin:/bin", "HOME": str(log.parent)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/moto-api/data.json", 60, proc.proc)
    except Exception:
        proc.stop()
        raise RuntimeError("moto server did not start:\n" + proc.output()[-3000:]) from None
    anyone = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    if not enforce_auth:
        return S3Server(proc, url, "AKIATESTOPEN", "open-secret-not-checked")
    iam = boto3.client("iam", **anyone)
    iam.create_user(UserName="gateway")
    iam.put_user_policy(UserName="gateway", PolicyName="s3", PolicyDocument=json.dumps(POLICY))
    key = iam.create_access_key(UserName="gateway")["AccessKey"]
    # From now on every request must be signed by a known key with the right secret.
    httpx.post(url + "/moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()
    return S3Server(proc, url, key["AccessKeyId"], key["SecretAccessKey"])
