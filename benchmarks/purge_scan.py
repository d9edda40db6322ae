"""Time one purge and one scan-only over every store, and print what each store held.

Usage (from the repository root):

    .venv/bin/python benchmarks/purge_scan.py [--dataset digits|fashion-mnist] [--subjects 10] [--keep DIR]

A fresh project in a temporary folder (its own DVC repository and local remote, its own ledger; no MLflow
store, no trained model: this times the data side): version 1 prepared, tracked and pushed, the benchmark's
copy of version 1 under artifacts/bench/<dataset> (what `forgetflow bench` writes), then the samples of
``--subjects`` data subjects erased as version 2 (keyed tombstones), then ``tasks.purge.run_purge`` (push,
pre-scan, gc of cache and remote, strip both copies, scan of every store) and ``tasks.purge.scan_only``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--keep", type=Path, default=None, help="make the project here and keep it")
    args = ap.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="forgetflow-purge-"))
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    shard = 256 if args.dataset == "digits" else 4096
    (root / "params.yaml").write_text(f"seed: 0\ndata: {{dataset: {args.dataset}, shard_size: {shard}}}\n")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("FORGETFLOW_TOMBSTONE_KEY", "benchmark-purge-scan-key-0123456789abcdef")

    from forgetflow import pipeline
    from forgetflow.data import DatasetVersion
    from forgetflow.project import Project
    from tasks import benchmarking, purge, versioning

    project = Project.load(root / "params.yaml")
    v1 = pipeline.current_version(project)
    versioning.track_and_push(project)
    benchmarking.bench_version(project, args.dataset)
    subjects = set(v1.subjects()[: args.subjects])
    train = v1.rows("train")
    forget = train[train["subject_id"].isin(subjects)]["sample_id"].tolist()
    v1.without(forget, "b-bench", pipeline.tombstone_key(project)).write(project.version_dir)
    versioning.track_and_push(project)
    v2 = DatasetVersion.load(project.version_dir)

    t = time.perf_counter()
    evidence = purge.run_purge(project, "b-bench")
    purge_s = time.perf_counter() - t
    t = time.perf_counter()
    scanned = purge.scan_only(project)
    scan_s = time.perf_counter() - t

    print(f"\n{args.dataset}: {len(v1.table)} images, {args.subjects} subjects = {len(forget)} samples erased "
          f"(version {v2.version}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| store | objects | MB | images hashed | erased content found |")
    print("|---|---:|---:|---:|---:|")
    for name, store in scanned["scan"]["stores"].items():
        print(f"| {name} | {store['objects']} | {store['bytes'] / 1e6:.1f} | {store['images_hashed']} | "
              f"{store['erased_content_found']} |")
    removed = evidence["removed"]
    print(f"\npurge: {purge_s:.1f} s (removed {removed['cache']['count']} object(s) from the cache, "
          f"{removed['remote']['count']} from the remote; copies: "
          + ", ".join(f"{k} {v['action']} ({v.get('removed_samples', 0)})" for k, v in evidence["copies"].items())
          + f"); verdict ok={evidence['scan']['ok']}")
    print(f"scan-only: {scan_s:.1f} s; verdict ok={scanned['scan']['ok']}")


if __name__ == "__main__":
    main()
