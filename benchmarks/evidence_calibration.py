"""Calibrate the evidence gates by measurement: how often do they pass a model that never saw the forget set, a
model that memorised it, and each paper method's unlearned model?

Usage (from the repository root):

    .venv/bin/python benchmarks/evidence_calibration.py --dataset digits            # development, minutes
    .venv/bin/python benchmarks/evidence_calibration.py --dataset fashion-mnist     # the published numbers
        [--batches 20] [--k 8] [--requests 4] [--per-request 2] [--memorise mislabelled|duplicated]
        [--methods mu-mis,rem,rfa,aru] [--attack lira] [--alpha 0.05] [--cache DIR] [--out FILE.md]
        [--set train.epochs=3 ...]

Setup, once per (dataset, recipe, seed; cached under ``--cache``): a pool of memorised training samples, the
original trained on the data with that pool in it, and K reference models of the same recipe on that data.

* ``--memorise mislabelled`` (default): the pool is ``forgetflow.scenarios``' corrupted data (random label
  swaps, before training): the original fits the wrong labels of its training data, which a model that did
  not train on them never predicts.
* ``--memorise duplicated``: the pool is clean training samples the original saw ``--copies`` times each.

Then ``--batches`` random batches: each draws ``--requests`` requests of ``--per-request`` samples from the
pool (one request = one person's samples). For every batch the forgetting and privacy gates
(``forgetflow.gates``, evidence reference, ``forgetflow.evidence``) judge

* (a) the retrained oracle (the recipe on the training data without the batch; cached per batch): must pass
  at least 1 − α of the time;
* (b) the untouched original, which memorised the batch: must fail at least 90 % of the time;
* (c) each paper method's unlearned model (from the original, the preset production would pick: corrupted
  for mislabelled batches, subject for duplicated ones): its pass rate, test accuracy and time.

The printed table (Markdown) is the confusion table of docs/verification.md; the load average is recorded
before and after, because every timing in it depends on what else ran on the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# digits is the development run: the tiny recipe of the test suite (seconds per model); Fashion-MNIST keeps
# params.yaml's recipe (the serving one).
DATASET_DEFAULTS = {"digits": {"model.width": 8, "train.epochs": 15, "train.batch_size": 64, "data.shard_size": 256},
                    "fashion-mnist": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASET_DEFAULTS), default="digits")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--k", type=int, default=None, help="reference models (default: references.k of params.yaml)")
    ap.add_argument("--requests", type=int, default=4, help="requests per batch")
    ap.add_argument("--per-request", type=int, default=2, help="samples per request")
    ap.add_argument("--memorise", choices=("mislabelled", "duplicated"), default="mislabelled")
    ap.add_argument("--pool", type=int, default=None, help="memorised samples (default: the corrupted scenario's size)")
    ap.add_argument("--copies", type=int, default=20, help="duplicated: times the original sees each pool sample")
    ap.add_argument("--methods", default="mu-mis,rem,rfa,aru")
    ap.add_argument("--attack", choices=("lira", "rmia"), default=None, help="default: references.attack")
    ap.add_argument("--alpha", type=float, default=None, help="default: evidence.alpha")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=REPO / "artifacts" / "calibration")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override (repeatable)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from forgetflow.config import apply_overrides, parse_override, validate_params
    import yaml

    load_before = os.getloadavg()
    started = time.perf_counter()
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {"data.dataset": args.dataset, "train.progress": False, "train.device": "cpu",
                 **DATASET_DEFAULTS[args.dataset]}
    overrides.update(parse_override(s) for s in args.set)
    if args.k is not None:
        overrides["references.k"] = args.k
    if args.attack is not None:
        overrides["references.attack"] = args.attack
    if args.alpha is not None:
        overrides["evidence.alpha"] = args.alpha
    params = validate_params(apply_overrides(data, overrides), "benchmark params")
    rows, setup = run(params, args)
    table = render(rows, params, args, setup, load_before, os.getloadavg(), time.perf_counter() - started)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")


def run(params: Any, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Set up once, then judge the oracle, the original and every method on each batch; one row per model."""
    from forgetflow import evidence as E
    from forgetflow import references
    from forgetflow.data import prepare_version
    from forgetflow.data.samples import SampleSet
    from forgetflow.data.version import DatasetVersion
    from forgetflow.gates import GateInputs, forgetting, privacy
    from forgetflow.methods import METHODS, data_for
    from forgetflow.models import clone
    from forgetflow.oracle import forget_hash, train_cached
    from forgetflow.runtime import RunContext
    from forgetflow.scenarios import make_task
    from forgetflow.training import Recipe, outputs

    cache = args.cache / args.dataset
    t = params.train
    recipe = Recipe(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, momentum=t.momentum,
                    weight_decay=t.weight_decay, schedule=t.schedule)
    clean = prepare_version(params.data, REPO, params.seed)
    if args.memorise == "mislabelled":
        options = {"size": args.pool} if args.pool else {}
        task = make_task("corrupted", clean, args.seed, **options)
        pool = list(task.corrupted_ids)
        version = _written(task.version, cache / f"version-mislabelled-{task.version.fingerprint[:12]}")
        preset = "corrupted"
    else:
        rng = np.random.default_rng([args.seed, 0xD0B])
        train_ids = clean.rows("train")["sample_id"].to_numpy(dtype=object)
        pool = sorted(str(s) for s in rng.choice(train_ids, args.pool or min(200, len(train_ids) // 10), replace=False))
        version = _written(clean, cache / f"version-clean-{clean.fingerprint[:12]}")
        preset = "subject"
    c, h, _ = version.shape
    arch = params.model.arch
    arch_config = {"in_channels": c, "num_classes": version.num_classes, "image_size": h}
    if arch == "small-cnn":
        arch_config["width"] = params.model.width
    train_rows = version.rows("train")
    train = version.sample_set(train_rows)
    pool_rows = version.rows("train")[lambda r: r["sample_id"].isin(pool)]
    if args.memorise == "duplicated":
        seen = SampleSet.concat(train, *([version.sample_set(pool_rows)] * (args.copies - 1)))
        excluded = f"duplicated:{args.copies}:{forget_hash(pool)}"
    else:
        seen, excluded = train, ""
    clock = time.perf_counter()
    original = train_cached("original", seen, version.fingerprint, excluded, arch, arch_config, recipe, params.seed,
                            cache / "models", "cpu")
    print(f"original: {'cached' if original.cached else 'trained'} in {time.perf_counter() - clock:.1f} s",
          file=sys.stderr)
    clock = time.perf_counter()
    trained = references.train_references(version, cache / "references", arch, arch_config, recipe,
                                          params.references.k, params.references.seed, "cpu",
                                          reason="evidence calibration")
    print(f"references: K={params.references.k} {'cached' if trained.cached else 'trained'} in "
          f"{time.perf_counter() - clock:.1f} s", file=sys.stderr)
    context = references.ReferenceContext(trained.refs, params.references)
    null = E.null_sample(version.sample_set(split="test"), params.evidence.null_samples, params.seed)
    val = version.sample_set(split="val")
    test = version.sample_set(split="test")
    original_test = outputs(original.model, test).accuracy
    methods = [m for m in args.methods.split(",") if m]
    rows: list[dict[str, Any]] = []
    for b in range(args.batches):
        rng = np.random.default_rng([args.seed, b, 0xBA7C])
        chosen = sorted(str(s) for s in rng.choice(np.array(pool, dtype=object), args.requests * args.per_request,
                                                  replace=False))
        order = rng.permutation(len(chosen))
        requests = {f"q{r}": sorted(chosen[i] for i in order[r * args.per_request:(r + 1) * args.per_request])
                    for r in range(args.requests)}
        forget = version.sample_set(train_rows[train_rows["sample_id"].isin(chosen)].sort_values("sample_id"))
        retain = version.sample_set(train_rows[~train_rows["sample_id"].isin(chosen)])
        clock = time.perf_counter()
        oracle = train_cached("oracle", retain, version.fingerprint, forget_hash(chosen), arch, arch_config, recipe,
                              params.seed, cache / "models", "cpu")
        candidates: list[tuple[str, Any, float]] = [("oracle (retrained)", oracle.model, oracle.seconds),
                                                     ("original (untouched)", original.model, 0.0)]
        for name in methods:
            spec = METHODS.get(name)
            cfg = spec.resolve(preset if preset in spec.scenarios() else None, None)
            data = data_for(spec, forget, retain, version.num_classes, recipe)
            start = time.perf_counter()
            model = spec.unlearn(clone(original.model), data, cfg, RunContext.create(params.seed + 1000 + b, "cpu"))
            candidates.append((name, model, time.perf_counter() - start))
        for kind, model, seconds in candidates:
            record = E.measure({"after": model}, forget, requests, null, context, params.references.attack, val)
            assessed = record.assess(params.evidence)
            gate_in = GateInputs({}, {}, None, evidence=E.gate_input(record, assessed))
            f = forgetting(gate_in, params.gates.forgetting.model_copy(update={"reference": "evidence"}))
            p = privacy(gate_in, params.gates.privacy.model_copy(update={"reference": "evidence"}))
            ev = assessed["after"]
            rows.append({"batch": b, "kind": kind, "passed": f["passed"] and p["passed"], "forgetting": f["passed"],
                         "privacy": p["passed"], "can_fail": f["can_fail"] and p["can_fail"],
                         "detectable": len(ev.detectable_requests), "share": ev.batch["share"],
                         "floor": ev.batch["floor"]["share"], "test_acc": outputs(model, test).accuracy,
                         "seconds": seconds, "verify_seconds": record.seconds["after"], "mode": record.mode})
        print(f"batch {b + 1}/{args.batches}: " + ", ".join(
            f"{r['kind'].split()[0]} {'pass' if r['passed'] else 'FAIL'}" for r in rows if r["batch"] == b)
              + f" ({time.perf_counter() - clock:.0f} s)", file=sys.stderr)
    setup = {"pool": len(pool), "original_test_acc": original_test, "original_seconds": original.seconds,
             "references": trained.refs.key, "reference_seconds": float(np.sum(trained.refs.seconds)),
             "null": len(null.samples), "preset": preset, "arch": arch, "arch_config": arch_config,
             "recipe": recipe.__dict__}
    return rows, setup


def _written(version: Any, folder: Path) -> Any:
    """A dataset version on disk (reference trainings read it from its folder), written once."""
    from forgetflow.data.version import DatasetVersion

    if not (folder / "version.json").exists():
        version.write(folder)
    return DatasetVersion.load(folder)


def render(rows: list[dict[str, Any]], params: Any, args: argparse.Namespace, setup: dict[str, Any],
           load_before: tuple[float, float, float], load_after: tuple[float, float, float], wall: float) -> str:
    """The confusion table: per model kind, how often the evidence gates passed, against what is required."""
    from forgetflow.evidence import clopper_pearson

    alpha = params.evidence.alpha
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    lines = [f"Evidence calibration on {args.dataset} ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC): "
             f"{args.batches} batches of {args.requests} requests x {args.per_request} {args.memorise} samples; "
             f"{params.references.attack}, K={params.references.k}, α={alpha:g}, FPR {params.evidence.fpr:g}, "
             f"null {setup['null']} test samples; pool {setup['pool']}; original test acc "
             f"{setup['original_test_acc']:.2f} %; method presets: {setup['preset']} where shipped.",
             "",
             "| model | batches | evidence gates pass [95 % CI] | forgetting pass | privacy pass | requirement | met | "
             "requests detectable (mean) | detected share (mean) | floor (mean) | test acc % | unlearn s | verify s |",
             "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind in kinds:
        g = [r for r in rows if r["kind"] == kind]
        n, passed = len(g), sum(r["passed"] for r in g)
        lo, hi = clopper_pearson(passed, n, 0.95)
        if kind.startswith("oracle"):
            need, met = f"pass ≥ {1 - alpha:.0%}", passed / n >= 1 - alpha
        elif kind.startswith("original"):
            need, met = "fail ≥ 90 %", (n - passed) / n >= 0.9
        else:
            need, met = "(reported)", None
        mean = lambda key: float(np.mean([r[key] for r in g]))  # noqa: E731
        lines.append(f"| {kind} | {n} | {passed / n:.0%} [{lo:.0%}, {hi:.0%}] | "
                     f"{np.mean([r['forgetting'] for r in g]):.0%} | {np.mean([r['privacy'] for r in g]):.0%} | "
                     f"{need} | {'—' if met is None else ('yes' if met else 'NO')} | {mean('detectable'):.2f} | "
                     f"{100 * mean('share'):.1f} % | {100 * mean('floor'):.1f} % | {mean('test_acc'):.2f} | "
                     f"{mean('seconds'):.2f} | {mean('verify_seconds'):.3f} |")
    blind = sum(not r["can_fail"] for r in rows)
    lines += ["", f"Tests that could not fail on their batch: {blind} of {len(rows)}. Attack mode: "
              f"{', '.join(sorted({r['mode'] for r in rows}))}. Setup: original {setup['original_seconds']:.1f} s, "
              f"references {setup['reference_seconds']:.1f} s in total ({setup['references']}); "
              f"{setup['arch']} {setup['arch_config']}, recipe {setup['recipe']}.",
              f"Wall time {wall:.0f} s; load average before {load_before[0]:.2f} / {load_before[1]:.2f} / "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} "
              f"({os.cpu_count()} CPUs)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
