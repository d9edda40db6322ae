"""The DVC remote on object storage: ``versioning.remote_url: s3://…`` against an S3-compatible server on
loopback. Versions are pushed there, the purge garbage-collects the bucket and scans every object left in
it, an independent listing of the bucket finds no erased pixels, and the current version comes back from
the bucket alone."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest

from forgetflow import pipeline
from forgetflow.data import DatasetVersion, content_hash
from forgetflow.project import Project
from tasks import purge, versioning
from tests.conftest import make_project_dir
from tests.tasks.test_purge import _erase, bare_hashes

BUCKET = "forgetflow-test"


@pytest.fixture
def s3(s3_server, monkeypatch):
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def _bucket(client) -> dict[str, bytes]:
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def test_versions_on_s3_are_purged_scanned_and_restorable(s3, s3_server, tmp_path):
    extra = (f"versioning: {{remote_url: 's3://{BUCKET}/dvc', remote_options: {{endpointurl: '{s3_server}'}}}}\n")
    project = Project.load(make_project_dir(tmp_path / "p", extra) / "params.yaml")
    pipeline.current_version(project)
    versioning.track_and_push(project)
    first = set(_bucket(s3))
    assert first and all(k.startswith("dvc/files/md5/") for k in first)

    _erase(project, 4, "b1")
    purge.run_purge(project, "b1")
    v3 = _erase(project, 6, "b2", start=300)
    evidence = purge.run_purge(project, "b2")
    erased = bare_hashes(project, v3)

    assert evidence["scan"]["ok"] and evidence["removed"]["remote"]["count"] >= 3
    assert evidence["scan"]["stores"]["dvc-remote"]["images_hashed"] == len(v3.table)
    stored = _bucket(s3)
    assert first - set(stored), "nothing of version 1 left the bucket"
    hashed = 0
    for key, data in stored.items():
        if data.startswith(b"\x93NUMPY"):
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            hashed += len(arr)
            assert not {content_hash(img) for img in arr} & erased, key
        elif data.startswith(b"PAR1"):
            table = pd.read_parquet(io.BytesIO(data))
            if "erased_in_version" not in table.columns:
                assert not set(table["content_hash"]) & erased, key
    assert hashed == len(v3.table)

    text = versioning.snapshot(project)
    shutil.rmtree(project.root / ".dvc" / "cache")
    shutil.rmtree(project.version_dir)
    versioning.restore(project, text)
    assert DatasetVersion.load(project.version_dir).fingerprint == v3.fingerprint
