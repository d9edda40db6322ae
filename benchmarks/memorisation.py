"""How much a benchmark setting's original memorises: per-sample attacks, population attacks, do-nothing gap.

Usage (from the repository root):

    .venv/bin/python benchmarks/memorisation.py --setting memorising [--dataset fashion-mnist]
        [--set train.epochs=60 --set data.pool=2500 ...] [--no-gap] [--json FILE]

Trains (or loads from the caches) the setting's original (seed 0) and its K reference models, then prints

* the setting: pool, architecture, recipe, train / test accuracy of the original, its training time;
* the attacks (ROC AUC, TPR at 1 % and 0.1 % FPR): LiRA and RMIA offline against the original (members: its
  whole pool; non-members: as many test samples, which no model trained on), the population loss attack beside
  them, and LiRA / RMIA online and offline with each reference as the target (forgetflow/bench_membership.py);
* unless ``--no-gap``: the random-10 % task of seed 0 with its retrained oracle, the do-nothing gap in both
  conventions, the population MIAs, and the share of forget samples LiRA / RMIA detect at 1 % FPR for the
  original and the oracle (with its 95 % interval); the oracle's training time;
* the load average before and after (timings depend on it; the attack figures do not).

``--set`` changes the setting for one run (dotted keys of the setting file), which is how the configurations
in docs/results.md were compared before one was written into forgetflow/settings/memorising.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    import yaml

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="memorising")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--set", action="append", default=[], help="setting override key=value (YAML value)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-gap", action="store_true", help="skip the random-10 %% oracle and the gap")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    ap.add_argument("--time-oracle", action="store_true",
                    help="train the random-10 %% oracle once more, outside the cache, and report its wall and CPU time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared CPU, more threads wait "
                                                           "on each other; docs/results.md)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    import numpy as np

    from forgetflow import bench, bench_membership as bm, bench_settings as bs
    from forgetflow.oracle import train_cached
    from forgetflow.project import Project
    from forgetflow.references import root_of, train_references
    from forgetflow.runtime import resolve_device
    from forgetflow.training import outputs

    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = yaml.safe_load(value)
    load_before = _load()
    project = Project.load(args.params)
    p = project.params
    setting = bs.load_setting(args.setting, overrides)
    version = bs.dataset_version(project, args.dataset, setting)
    r = bs.resolve(setting, project, version)
    train = version.sample_set(split="train")
    original = train_cached("original", train, version.fingerprint, "", r.arch, r.arch_config, r.recipe, args.seed,
                            project.oracle_dir, p.train.device, p.train.progress, p.train.deterministic)
    started = time.perf_counter()
    trained = train_references(version, root_of(project), r.arch, r.arch_config, r.recipe, r.k, r.ref_seed,
                               p.train.device, p.train.deterministic, p.train.progress, reason="memorisation benchmark")
    refs_wall = time.perf_counter() - started
    refs = trained.refs
    device = resolve_device(p.train.device)
    train_acc = outputs(original.model, train, device=device).accuracy
    test_acc = outputs(original.model, version.sample_set(split="test"), device=device).accuracy
    rows = bm.memorisation(original.model, version, refs, p.references, device, args.seed)

    result = {"setting": setting.model_dump(), "overrides": overrides, "dataset": args.dataset,
              "pool": int((version.table["split"] == "train").sum()), "arch": r.arch, "arch_config": r.arch_config,
              "recipe": r.recipe.__dict__, "k": r.k, "ref_seed": r.ref_seed, "train_acc": train_acc,
              "test_acc": test_acc, "original_seconds": original.seconds, "original_cached": original.cached,
              "reference_seconds": [float(s) for s in refs.seconds], "references_cached": trained.cached,
              "references_wall": refs_wall, "attacks": rows, "load_before": load_before}
    print(f"## setting {setting.name} {overrides or ''}\n")
    print(f"pool {result['pool']} training samples of {args.dataset}; {r.arch} {r.arch_config}; recipe {r.recipe}; "
          f"{r.k} references (seed {r.ref_seed})  ")
    print(f"original: train accuracy {train_acc:.2f} %, test accuracy {test_acc:.2f} % (gap {train_acc - test_acc:.2f}); "
          f"trained in {original.seconds:.1f} s{' (cached)' if original.cached else ''}; references "
          f"{np.mean(refs.seconds):.1f} s each{' (cached)' if trained.cached else ''}\n")
    print("| attack | target | members | non-members | AUC | TPR @ 1 % FPR | TPR @ 0.1 % FPR |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        sd = (lambda k: f" ± {row[k + '_std']:.{1 if k != 'auc' else 3}f}" if f"{k}_std" in row else "")
        print(f"| {row['attack']} | {row['target']} | {row['members']} | {row['non_members']} | {row['auc']:.3f}{sd('auc')} "
              f"| {row['tpr_1']:.1f}{sd('tpr_1')} | {row['tpr_01']:.1f}{sd('tpr_01')} |")

    if not args.no_gap:
        from forgetflow.metrics import compare_to_oracle

        s = bench.setup(version, "random", args.seed, r.arch, r.arch_config, r.recipe, project.oracle_dir,
                        p.train.device, {}, True, p.evaluate.mia_max_shadow)
        gaps = compare_to_oracle(s.original_eval, s.oracle_eval)
        br = bm.BenchReferences.for_splits(refs, p.references, s.splits)
        per = {}
        for name, model, ev in (("original", s.original.model, s.original_eval), ("oracle", s.oracle.model, s.oracle_eval)):
            per[name] = br.scores(model, ev.forget, ev.test, s.splits, device)
        cols = {name: bm.membership_columns(sc, per["oracle"]) for name, sc in per.items()}
        n = len(s.splits.forget)
        result["gap"] = {"forget_size": n, "oracle_seconds": s.oracle.seconds, "oracle_cached": s.oracle.cached,
                         "original": s.original_eval.metrics, "oracle": s.oracle_eval.metrics, **gaps,
                         "per_sample": {k: {c: v for c, v in d.items() if not c.startswith("_")} for k, d in cols.items()}}
        print(f"\nrandom 10 % (seed {args.seed}, {n} forget samples); oracle trained in {s.oracle.seconds:.1f} s"
              f"{' (cached)' if s.oracle.cached else ''}\n")
        print("| model | FA | RA | TA | MIA-eff. | MIA entropy | loss AUC f-vs-t | LiRA det. @1 % FPR | RMIA det. @1 % FPR |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, ev in (("original (do nothing)", s.original_eval), ("retrain (oracle)", s.oracle_eval)):
            m = ev.metrics
            c = cols["original" if name.startswith("original") else "oracle"]

            def det(a: str) -> str:
                lo, hi = bm.clopper_pearson(c[f"{a}_detected_count"], n)
                return f"{c[f'{a}_detected']:.2f} [{lo:.2f}, {hi:.2f}]" if f"{a}_detected" in c else "–"

            print(f"| {name} | {m['forget_acc']:.2f} | {m['retain_acc']:.2f} | {m['test_acc']:.2f} | "
                  f"{m['mia_efficacy']:.2f} | {m['mia_entropy']:.2f} | {m['mia_auc']:.3f} | {det('lira')} | {det('rmia')} |")
        o = cols["original"]
        print(f"\ndo-nothing gap: SalUn {gaps['avg_gap']:.2f}, MU-Mis {gaps['avg_gap_mumis']:.2f}; original's forget "
              f"scores vs the oracle's: LiRA mean |Δz| {o.get('lira_dist', float('nan')):.3f}, AUC "
              f"{o.get('lira_auc_vs_oracle', float('nan')):.3f}")
    if args.time_oracle:
        result["oracle_timing"] = _time_oracle(version, r, args.seed, p.train.device)
        t = result["oracle_timing"]
        print(f"\none oracle training (random 10 %, seed {args.seed}, not cached): wall {t['wall']:.1f} s, CPU "
              f"{t['cpu']:.1f} s on {t['threads']} thread(s); load average before {t['load_before']}, after "
              f"{t['load_after']}")
    result["load_after"] = _load()
    print(f"\nload average (1/5/15 min) before {load_before}, after {result['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


def _time_oracle(version, r, seed: int, device: str) -> dict:
    """Wall and CPU seconds of one oracle training: CPU time is what an idle machine's wall time would be."""
    import torch

    from forgetflow.data.splits import build_splits
    from forgetflow.models import build_model
    from forgetflow.runtime import RunContext
    from forgetflow.scenarios import make_task
    from forgetflow.training import train_model

    task = make_task("random", version, seed)
    retain = build_splits(version, task.forget_ids).retain
    run = RunContext.create(seed, device, deterministic=True)
    model = build_model(r.arch, **r.arch_config)
    before = _load()
    wall, cpu = time.perf_counter(), time.process_time()
    train_model(model, retain, r.recipe, run, desc="oracle (timed)")
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "threads": torch.get_num_threads(),
            "samples": len(retain), "load_before": before, "load_after": _load()}


if __name__ == "__main__":
    main()
