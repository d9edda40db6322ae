"""The deletion-batch report: one self-contained HTML page a privacy officer can read, plus a Markdown digest.

:func:`render_html` takes the batch's record (what ``tasks/reporting.py`` gathers from the batch result, the
ledger, the validation and evaluation reports and the receipts) and the per-sample outputs the evaluation
saved, and returns the page: plain-words summary, requests and quarantine, validation, the unlearn-or-retrain
decision, metrics next to the oracle's and the champion's (each MIA convention named), plots embedded as
base64 PNG (loss and confidence histograms, accuracy bars), gate verdicts and the promotion decision, the
erasure and the receipts. Nothing here talks to MLflow or Prefect; matplotlib runs on the Agg backend.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from typing import Any, Mapping

import numpy as np

from forgetflow.gates import MEANING

# What each metric means, in words (keys as the evaluation reports them).
METRICS = [
    ("forget_acc", "Accuracy on the erased samples", "%",
     "How often the model still gets the erased samples right (UA, unlearning accuracy, is 100 minus this). "
     "It should be close to the oracle's: a model that never saw them still recognises many by generalisation."),
    ("retain_acc", "Accuracy on the remaining training samples", "%",
     "RA: the model keeps what it should keep."),
    ("test_acc", "Accuracy on held-out test images", "%",
     "TA: how useful the model is on images nobody trained on."),
    ("mia_efficacy", "MIA-Efficacy (SalUn, svc-efficacy)", "%",
     "Share of erased samples a membership-inference attack (an SVC on the model's confidence) judges 'not used "
     "in training'. Higher means more forgotten; the target is the oracle's value."),
    ("mia_entropy", "Member rate (SSD, entropy-logreg)", "%",
     "Share of erased samples an attack on the output entropy judges 'used in training'. Lower means more "
     "forgotten; compare with the oracle's."),
    ("mia_auc", "Loss-attack AUC, erased vs test (loss-auc)", "",
     "How well the per-sample loss separates erased samples from never-seen test images: 0.5 is a coin flip "
     "(nothing to tell them apart), 1.0 is perfect separation."),
    ("mia_unseen_acc", "MUFAC attack accuracy, erased vs unseen (mufac-unseen)", "",
     "Accuracy of an attack telling erased samples from unseen ones; 0.5 is chance."),
]

# The page itself is the package-data template forgetflow/templates/report.html (Jinja2, autoescaped).
TEMPLATE = "report.html"

FRAME_NAMES = {"dataset": "The dataset table (every sample)", "shards": "The stored image files",
               "manifest": "The samples to erase (manifest)", "balance": "Class balance after erasure"}
MEASURE_NAMES = {
    "champion_version": "Model serving before the batch", "held_batches": "Earlier erasures it still holds",
    "last_full_retrain_version": "Last model trained from scratch (lineage)",
    "last_full_retrain_samples": "Its training samples", "erased_since_last_retrain": "Samples erased since (this batch included)",
    "forgotten_fraction": "Fraction erased since", "champion_test_acc": "Serving model's test accuracy (%)",
    "reference_test_acc": "Reference test accuracy (%)", "quality_reference": "Reference",
    "quality_drift": "Quality drift (points)", "failed_gates": "Gates the unlearned model failed",
    "rejected_version": "Rejected unlearned version",
}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2%}"


def purge_lines(purge: Mapping[str, Any] | None) -> list[str]:
    """The purge evidence (tasks/purge.py's record) in a few plain sentences; empty when there is none."""
    if not purge:
        return []
    if purge.get("enabled") is False:
        return ["Older stored copies of the dataset (DVC cache and remote) were not purged: purge is switched off "
                "(purge.enabled: false), so earlier dataset versions in storage may still contain the erased images."]
    lines = []
    removed = purge.get("removed") or {}
    parts = [f"{(removed.get(store) or {}).get('count', 0)} from the {label}"
             for store, label in (("cache", "local DVC cache"), ("remote", "DVC remote")) if store in removed]
    if parts:
        lines.append("Stored objects of earlier dataset versions that still contained erased images were deleted: "
                     + " and ".join(parts) + ".")
    scan = purge.get("scan") or {}
    if scan:
        stores = scan.get("stores") or {}
        found = sum(int((v or {}).get("erased_content_found", 0) or 0) for v in stores.values())
        objects = sum(int((v or {}).get("objects", 0) or 0) for v in stores.values())
        verdict = "none of them was found" if scan.get("ok") else f"{found} were STILL FOUND"
        lines.append(f"A scan then read {objects} stored object(s) in {len(stores)} store(s), looking for the "
                     f"{scan.get('erased_hashes', '?')} erased image(s) by content hash: {verdict}.")
    models = purge.get("models") or {}
    deleted, retained = models.get("deleted_count", 0), models.get("retained_count", 0)
    if deleted or retained:
        lines.append(f"Models trained on the erased images: the weights of {deleted} were deleted"
                     + (f", {retained} are retained for now (see the receipts: until when, and why)" if retained else "")
                     + ".")
    remaining = purge.get("remaining") or []
    if remaining:
        lines.append(f"{len(remaining)} place(s) the purge does not clean still hold or name erased data; the receipts "
                     "name each one: " + "; ".join(f"{r.get('object')} ({r.get('what')})" for r in remaining[:3])
                     + (" …" if len(remaining) > 3 else "") + ".")
    return lines


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(outputs: Mapping[str, np.ndarray], doc: Mapping[str, Any]) -> list[dict[str, str]]:
    """Loss and confidence histograms (erased samples: before / new / oracle, and test images) and accuracy bars."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = []
    series = [("champion", "before (serving model)", "#999999"), ("candidate", "new model", "#2a6fdb"),
              ("oracle", "oracle (retrained without them)", "#e07b00")]
    for kind, title, xlabel, caption in (
        ("loss", "Loss on the erased samples", "per-sample cross-entropy loss (log scale)",
         "Each bar counts erased samples by how 'surprised' the model is by them. A model that memorised them has "
         "losses near zero (left); after erasure the new model's histogram should look like the oracle's, and like "
         "the grey outline of never-seen test images."),
        ("confidence", "Confidence on the erased samples", "probability the model gives the true label",
         "How sure each model is of the correct answer for every erased sample. Memorised samples pile up at 1.0; "
         "after erasure the new model should be about as sure as the oracle, no more."),
    ):
        key = f"candidate_forget_{kind}"
        if key not in outputs or len(outputs[key]) == 0:
            continue
        fig, ax = plt.subplots(figsize=(8, 3.6))
        if kind == "loss":
            values = np.concatenate([outputs[k] for k in outputs if k.endswith(f"_{kind}")])
            low = max(float(np.min(values)), 1e-6)
            bins = np.logspace(np.log10(low), np.log10(max(float(np.max(values)), low * 10)), 30)
            ax.set_xscale("log")
        else:
            bins = np.linspace(0, 1, 26)
        for role, label, colour in series:
            data = outputs.get(f"{role}_forget_{kind}")
            if data is not None and len(data):
                ax.hist(np.clip(data, bins[0], bins[-1]), bins=bins, alpha=0.4, label=label, color=colour,
                        histtype="stepfilled", edgecolor=colour, linewidth=1.2)
        test = outputs.get(f"candidate_test_{kind}")
        if test is not None and len(test):
            weights = np.full(len(test), len(outputs[key]) / len(test))
            ax.hist(np.clip(test, bins[0], bins[-1]), bins=bins, weights=weights, histtype="step", color="#333333",
                    label="new model on test images (scaled)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("erased samples")
        ax.legend(fontsize=8)
        out.append({"title": title, "caption": caption, "png": _png(fig)})

    metrics = {"before": doc.get("champion_before") or {}, "new model": doc.get("metrics") or {},
               "oracle": doc.get("oracle") or {}}
    keys = [("forget_acc", "erased samples"), ("retain_acc", "remaining training"), ("test_acc", "test images")]
    if any(metrics["new model"].get(k) is not None for k, _ in keys):
        fig, ax = plt.subplots(figsize=(8, 3.6))
        width = 0.26
        x = np.arange(len(keys))
        for i, (name, colour) in enumerate((("before", "#999999"), ("new model", "#2a6fdb"), ("oracle", "#e07b00"))):
            vals = [metrics[name].get(k) for k, _ in keys]
            if all(v is None for v in vals):
                continue
            bars = ax.bar(x + (i - 1) * width, [v or 0 for v in vals], width, label=name, color=colour)
            ax.bar_label(bars, labels=[_fmt(v, 1) for v in vals], fontsize=7)
        ax.set_xticks(x, [label for _, label in keys])
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 119)
        ax.legend(fontsize=8, loc="upper center", ncol=3)
        out.append({"title": "Accuracy", "png": _png(fig),
                    "caption": "Accuracy of each model on the erased samples, the remaining training samples and the "
                               "test images. The new model's bars should match the oracle's."})
    return out


def summary_lines(doc: Mapping[str, Any]) -> list[str]:
    """The report's opening paragraph, in plain words."""
    requests = doc.get("requests_detail") or []
    quarantined = doc.get("quarantined") or {}
    decision = doc.get("decision") or {}
    promotion = doc.get("promotion") or {}
    lines = [f"This batch honoured {len(requests)} erasure request(s), covering {doc.get('forget_samples', 0)} "
             f"training sample(s)." + (f" {len(quarantined)} request(s) could not be honoured and were quarantined "
                                       "(reasons below)." if quarantined else "")]
    if decision.get("action") == "retrain":
        lines.append("The model was retrained from scratch without the erased samples (exact erasure). "
                     + decision.get("reason", ""))
    else:
        lines.append(f"The serving model was made to forget them with the unlearning method "
                     f"'{doc.get('method')}'. " + decision.get("reason", ""))
    action = promotion.get("action")
    version = doc.get("model_version")
    if action == "promote":
        lines.append(f"The result, model version {version}, passed the checks and now serves.")
    elif action == "await-approval":
        lines.append(f"The result, model version {version}, waits for a person's approval before it serves. Until "
                     "then the previous model keeps serving, and it still holds the erased samples.")
    else:
        lines.append(f"The result, model version {version}, did not pass the checks; the previous model keeps serving "
                     "and still holds the erased samples until a retrain replaces it.")
    dv = doc.get("data_version") or {}
    lines.append(f"The samples were deleted from the dataset (new version {dv.get('version', '-')}), and "
                 f"{len(doc.get('receipts_detail') or [])} deletion receipt(s) were issued.")
    return lines


def render_html(doc: Mapping[str, Any], outputs: Mapping[str, np.ndarray] | None = None) -> str:
    """The whole report page (self-contained: styles inline, plots as base64 PNG)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("forgetflow", "templates"), autoescape=True,
                             undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    mia_keys = set(doc.get("metrics") or {}) | set(doc.get("oracle") or {})
    rows = [r for r in METRICS if r[0] in mia_keys or r[0] in ("forget_acc", "retain_acc", "test_acc")]
    gates = doc.get("gates") or {}
    return env.get_template(TEMPLATE).render(
        b=doc, generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), summary=summary_lines(doc),
        requests=doc.get("requests_detail") or [], quarantined=doc.get("quarantined") or {},
        validation=doc.get("validation"), frame_names=FRAME_NAMES, decision=doc.get("decision") or {},
        measure_names=MEASURE_NAMES, metric_rows=rows, m=doc.get("metrics") or {}, o=doc.get("oracle") or {},
        c=doc.get("champion_before") or {}, gaps=doc.get("gaps") or {}, conventions=doc.get("mia_conventions") or {},
        plots=plots(outputs, doc) if outputs else [], gates=gates, meaning=MEANING,
        exact=(doc.get("decision") or {}).get("action") == "retrain", promotion=doc.get("promotion") or {},
        rejected=doc.get("rejected"), dv_before=(doc.get("data_version_before") or {}),
        dv_after=doc.get("data_version") or {}, superseded=doc.get("superseded") or [],
        purge_lines=purge_lines(doc.get("purge")),
        receipts=doc.get("receipts_detail") or [])


def render_markdown(doc: Mapping[str, Any], report_path: str) -> str:
    """A short Markdown digest (the Prefect artifact): summary, metrics, gates, decision, where the page is."""
    m, o, c = doc.get("metrics") or {}, doc.get("oracle") or {}, doc.get("champion_before") or {}
    lines = [f"# Deletion batch {doc.get('batch_id')}", ""]
    lines += [f"{line}" for line in summary_lines(doc)]
    lines += ["", "| metric | new model | oracle | before |", "|---|---:|---:|---:|"]
    for key, label, unit, _ in METRICS:
        if key in m:
            lines.append(f"| {label} | {_fmt(m.get(key))} | {_fmt(o.get(key))} | {_fmt(c.get(key))} |")
    lines += ["", "| gate | verdict | detail |", "|---|---|---|"]
    for name, g in (doc.get("gates") or {}).items():
        verdict = "off" if not g.get("enabled", True) else ("passed" if g["passed"] else "**failed**")
        lines.append(f"| {name} | {verdict} | {g.get('detail', '')} |")
    decision, promotion = doc.get("decision") or {}, doc.get("promotion") or {}
    lines += ["", f"**Unlearn or retrain:** {decision.get('action')} ({decision.get('rule')}): {decision.get('reason')}",
              "", f"**Promotion:** {promotion.get('action')}: {promotion.get('reason')}", "",
              f"Full report: `{report_path}`"]
    return "\n".join(lines)
