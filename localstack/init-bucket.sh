#!/usr/bin/env bash
# Runs inside LocalStack once it is ready: creates the bucket hds_s3 uses.
awslocal s3 mb s3://hds-data || true
