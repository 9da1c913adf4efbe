"""Session-wide rules for every test.

The network rule: boto3 and botocore, finding no credentials, would try the instance
metadata address. Before anything imports them, the whole test run gets dummy
credentials, a region, and AWS_EC2_METADATA_DISABLED=true; every client a test builds
also names an endpoint on loopback.
"""

from __future__ import annotations

import os

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_ACCESS_KEY_ID"] = "AKIDTESTTESTTESTTEST"
os.environ["AWS_SECRET_ACCESS_KEY"] = "test-secret-not-used-by-any-real-account"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
