"""Per-sample attacks validated on the original model: members (training samples) vs non-members (test samples).

    .venv/bin/python benchmarks/verification.py                      # Fashion-MNIST, default recipe, references.k
    .venv/bin/python benchmarks/verification.py --project /tmp/verif --k 8 --json state/verification.json

A project folder (a temporary one unless ``--project`` names one to reuse) with the shipped params.yaml's
model, recipe and reference settings (``--set key=value`` to override): it prepares the dataset, trains (or
loads from that folder's cache) the original on the whole training split and the K reference models, then
prints two tables:

1. the original model, members = a seeded sample of training samples as large as the test split, non-members =
   the test split (balanced): ROC AUC and TPR at 1 % and 0.1 % FPR of LiRA and RMIA (both offline: test samples
   have no IN references), beside the signals of the population attacks (SalUn's SVC reads the true-label
   confidence, the SSD attack the entropy, the loss attack the loss: a threshold on one number, whose ROC is
   the best any such attack reaches);
2. the LiRA paper's protocol, which needs no further training: each reference in turn is the target, the other
   K − 1 are its references (K/2 − 1 IN and K/2 − 1 OUT per sample, see ``balanced``), members = its half of the
   training split, non-members = the other half. Here both sides have IN references, so online LiRA and RMIA
   can run beside offline ones.

Every reference's training time and the load average before and after it are printed too (timings are only
comparable on a quiet machine: record the load average beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from forgetflow import pipeline, references  # noqa: E402
from forgetflow.config import parse_override  # noqa: E402
from forgetflow.metrics.membership import Population, lira_scores, rmia_scores, roc_auc, tpr_at_fpr  # noqa: E402
from forgetflow.metrics.mia import confidence, entropy  # noqa: E402
from forgetflow.project import Project  # noqa: E402
from forgetflow.references import ReferenceContext, logit_confidence  # noqa: E402
from forgetflow.runtime import resolve_device  # noqa: E402
from forgetflow.training import outputs  # noqa: E402

FPRS = (0.01, 0.001)


def row(name: str, members: np.ndarray, non: np.ndarray) -> dict:
    return {"attack": name, "auc": roc_auc(members, non), **{f"tpr@{f:g}": tpr_at_fpr(members, non, f) for f in FPRS},
            "members": int(len(members)), "non_members": int(len(non))}


def project_for(args: argparse.Namespace) -> Project:
    folder = Path(args.project) if args.project else Path(tempfile.mkdtemp(prefix="forgetflow-verification-"))
    folder.mkdir(parents=True, exist_ok=True)
    params = folder / "params.yaml"
    if not params.exists():
        params.write_text((ROOT / "params.yaml").read_text())
    overrides = dict(parse_override(o) for o in args.set or [])
    overrides.setdefault("data.dataset", args.dataset)
    if args.dataset == "fashion-mnist":
        overrides.setdefault("data.raw", "/usr/share/datasets/fashion-mnist")
    if args.k:
        overrides["references.k"] = args.k
    return Project.load(params, overrides)


def original_table(project: Project, version, model, selection, device) -> list[dict]:
    settings = project.params.references
    rng = np.random.default_rng(project.params.seed)
    train, test = version.rows("train"), version.rows("test")
    members_rows = train.iloc[np.sort(rng.choice(len(train), min(len(train), len(test)), replace=False))]
    m_set, t_set = version.sample_set(members_rows), version.sample_set(test)
    m_out, t_out = outputs(model, m_set, 1024, device), outputs(model, t_set, 1024, device)
    phi = np.concatenate([logit_confidence(m_out.logits, m_out.labels), logit_confidence(t_out.logits, t_out.labels)])
    refs = selection.refs
    view = references.ReferenceView.concat(refs.view(m_set.ids), refs.view(t_set.ids))
    context = ReferenceContext(refs, settings)
    population = context.population(model, version.sample_set(split="val"), device)
    n = len(m_set)
    rows = []
    lira, mode = lira_scores(phi, view.phi, view.member, view.usable, settings.lira_mode, settings.lira_variance,
                             settings.lira_min_own)
    rows.append(row(f"LiRA ({mode}, K={refs.k})", lira[:n], lira[n:]))
    rmia, mode = rmia_scores(phi, view.phi, view.member, view.usable, population.target_phi, population.view.phi,
                             population.view.usable, settings.rmia_gamma, settings.rmia_a, settings.rmia_mode)
    rows.append(row(f"RMIA ({mode}, K={refs.k}, γ={settings.rmia_gamma:g}, a={settings.rmia_a:g})", rmia[:n], rmia[n:]))
    rows.append(row("svc-efficacy signal: true-label confidence", confidence(m_out), confidence(t_out)))
    rows.append(row("entropy-logreg signal: −entropy", -entropy(m_out), -entropy(t_out)))
    rows.append(row("loss-auc signal: −loss", -m_out.loss.numpy(), -t_out.loss.numpy()))
    return rows


def balanced(view: references.ReferenceView) -> references.ReferenceView:
    """Without the target, a sample has one IN reference more than OUT (or the reverse), and which side is larger
    depends on its membership in the target: that alone separates members. Drop one reference of the larger side
    per sample (the lowest-numbered), so every sample has K/2 − 1 of each."""
    usable = view.usable.copy()
    for side, other in ((view.member, ~view.member), (~view.member, view.member)):
        larger = (side & usable).sum(0) > (other & usable).sum(0)
        first = np.argmax(side & usable, axis=0)
        usable[first[larger], np.flatnonzero(larger)] = False
    return references.ReferenceView(view.ids, view.phi, view.member, usable)


def leave_one_out_table(project: Project, selection) -> list[dict]:
    """Each reference as the target, the others as its references, on the training split (both sides have IN)."""
    settings = project.params.references
    refs = selection.refs
    train_ids = refs.train_ids
    view = refs.view(train_ids)
    val_ids = ReferenceContext(refs, settings).population_ids(refs.ids[refs.split == "val"])
    z_view = refs.view(val_ids)
    per: dict[str, list[dict]] = {}
    for j in range(refs.k):
        others = [i for i in range(refs.k) if i != j]
        v, zv = balanced(view.models(others)), z_view.models(others)
        target, is_member = view.phi[j], view.member[j]
        pop = Population(z_view.phi[j], zv)
        for label, fn in (
            ("LiRA online", lambda: lira_scores(target, v.phi, v.member, v.usable, "online", settings.lira_variance,
                                                settings.lira_min_own)[0]),
            ("LiRA offline", lambda: lira_scores(target, v.phi, v.member, v.usable, "offline", settings.lira_variance,
                                                 settings.lira_min_own)[0]),
            ("RMIA online", lambda: rmia_scores(target, v.phi, v.member, v.usable, pop.target_phi, pop.view.phi,
                                                pop.view.usable, settings.rmia_gamma, settings.rmia_a, "online")[0]),
            ("RMIA offline", lambda: rmia_scores(target, v.phi, v.member, v.usable, pop.target_phi, pop.view.phi,
                                                 pop.view.usable, settings.rmia_gamma, settings.rmia_a, "offline")[0]),
            ("loss signal (φ of the target)", lambda: target),
        ):
            s = fn()
            per.setdefault(label, []).append(row(label, s[is_member], s[~is_member]))
    out = []
    for label, rows in per.items():
        mean = {key: float(np.mean([r[key] for r in rows])) for key in ("auc", *[f"tpr@{f:g}" for f in FPRS])}
        out.append({"attack": f"{label}, {refs.k // 2 - 1}+{refs.k // 2 - 1} references (mean of {len(rows)} targets)",
                    **mean,
                    "members": rows[0]["members"], "non_members": rows[0]["non_members"]})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| attack | AUC | TPR @ 1 % FPR | TPR @ 0.1 % FPR | members / non-members |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attack']} | {r['auc']:.3f} | {100 * r['tpr@0.01']:.2f} % | {100 * r['tpr@0.001']:.2f} % | "
                     f"{r['members']} / {r['non_members']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", help="project folder to create or reuse (its model caches are reused)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--k", type=int, help="reference models (default: references.k)")
    parser.add_argument("--set", action="append", help="params override key=value (repeatable)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    project = project_for(args)
    device = resolve_device(project.params.train.device)
    started = time.perf_counter()
    load = {"start": os.getloadavg()}
    version = pipeline.current_version(project)
    original = pipeline.train_original(project, version, progress=False)
    load["after_original"] = os.getloadavg()
    trained = references.project_train(project, version, reason="benchmarks/verification.py", progress=True)
    load["after_references"] = os.getloadavg()
    selection = references.Selection(trained.refs, trained.folder, ())
    metas = [json.loads((trained.folder / f"ref-{j}.json").read_text()) for j in range(trained.refs.k)]
    first = original_table(project, version, original.model, selection, device)
    # each reference as the target leaves K/2 - 1 references a side: a pooled variance needs 2 (K >= 6)
    second = leave_one_out_table(project, selection) if trained.refs.k >= 6 else []
    load["end"] = os.getloadavg()
    print(f"\n{version.label}: {version.meta['counts']}; {project.params.model.arch} width {project.params.model.width}, "
          f"{project.params.train.epochs} epochs; device {device}; project {project.root}")
    print(f"original: {original.seconds:.1f} s to train ({'cached' if original.cached else 'trained now'})")
    print(f"references: K={trained.refs.k} ({'cached' if trained.cached else 'trained now'}), "
          + ", ".join(f"{m['seconds']:.1f}" for m in metas) + " s; load average before/after each: "
          + "; ".join(f"{m.get('load_before', ['?'])[0]}/{m.get('load_after', ['?'])[0]}" for m in metas))
    print(f"load averages (1, 5, 15 min): {json.dumps(load)}")
    print("\n## The original model: training samples vs test samples\n\n" + markdown(first))
    print("\n## Each reference as the target (the LiRA paper's protocol)\n\n"
          + (markdown(second) if second else f"skipped: with K = {trained.refs.k} each target keeps "
             f"{trained.refs.k // 2 - 1} reference(s) a side, and a variance needs 2 (use --k 6 or more)"))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"version": version.label, "original_seconds": original.seconds,
                                               "references": metas, "load": load, "original": first,
                                               "leave_one_out": second}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
