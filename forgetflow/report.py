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

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Deletion batch {{ b.batch_id }} — forgetflow report</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;width:100%}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.ok{color:#11691b;font-weight:600}.fail{color:#a4161a;font-weight:600}.off{color:#777}
.box{background:#f7f9fc;border-left:4px solid #4a78c2;padding:.6em 1em;margin:1em 0}
.warn{background:#fff6e5;border-left:4px solid #d08a00;padding:.6em 1em;margin:1em 0}
.small{font-size:.88em;color:#555}code{background:#f1f1f1;padding:0 .2em}
img{max-width:100%;border:1px solid #eee}
</style></head><body>
<h1>Deletion batch <code>{{ b.batch_id }}</code></h1>
<p class="small">Generated {{ generated }} by forgetflow. Flow run {{ b.flow_run_id or "-" }}; MLflow run {{ b.mlflow_run_id or "-" }}.</p>

<h2 id="summary">Summary</h2>
<div class="box">{% for line in summary %}<p>{{ line }}</p>{% endfor %}</div>

<h2 id="requests">Requests</h2>
<p>{{ requests|length }} request(s) honoured, {{ quarantined|length }} quarantined (not honoured in this batch; they
stay in the ledger with the reason below until someone fixes the request or the data).</p>
<table><tr><th>Request</th><th>Reason</th><th>Data subject / sample</th><th>Received</th><th class="num">Samples erased</th></tr>
{% for r in requests %}<tr><td><code>{{ r.request_id }}</code></td><td>{{ r.reason }}</td><td>{{ r.subject_id or r.sample_id or "-" }}</td><td>{{ r.received_at or "-" }}</td><td class="num">{{ r.samples }}</td></tr>
{% endfor %}</table>
{% if quarantined %}<h3>Quarantined</h3>
<table><tr><th>Request</th><th>Why it was not honoured</th></tr>
{% for rid, why in quarantined.items() %}<tr><td><code>{{ rid }}</code></td><td>{{ why }}</td></tr>{% endfor %}</table>{% endif %}

<h2 id="validation">Validation</h2>
<p>Before anything was erased, the dataset and the list of samples to erase were checked (Great Expectations
data contract: ids unique and known, only training samples, labels in range, images well-formed, no exact
duplicate of an erased image left behind in the training data, class balance).</p>
{% if validation %}
<p>Outcome: {% if validation.blocking %}<span class="fail">the dataset failed a critical check</span>{% elif validation.quarantine %}<span class="ok">dataset valid</span>; {{ validation.quarantine|length }} request(s) quarantined{% else %}<span class="ok">everything valid</span>{% endif %}.</p>
<table><tr><th>What was checked</th><th class="num">Checks</th><th class="num">Passed</th></tr>
{% for frame, st in validation.statistics.items() %}<tr><td>{{ frame_names.get(frame, frame) }}</td><td class="num">{{ st.evaluated_expectations }}</td><td class="num">{{ st.successful_expectations }}</td></tr>{% endfor %}</table>
{% for w in validation.warnings %}<div class="warn">Warning: {{ w }}</div>{% endfor %}
{% else %}<p>No validation record found.</p>{% endif %}

<h2 id="decision">Unlearn or retrain</h2>
<p>Decision: <b>{{ decision.action }}</b> (rule: <code>{{ decision.rule }}</code>).</p>
<div class="box">{{ decision.reason }}</div>
{% if decision.measures %}<table><tr><th>Measure</th><th>Value</th></tr>
{% for k, v in decision.measures.items() %}<tr><td>{{ measure_names.get(k, k) }}</td><td>{{ (v|pct) if k == "forgotten_fraction" else (v|fmt) }}</td></tr>{% endfor %}</table>{% endif %}

<h2 id="metrics">Results</h2>
<p>The new model (version {{ b.model_version }}, made with <code>{{ b.method }}</code>) next to the
<b>oracle</b> — a model retrained from scratch without the erased samples, the ideal outcome — and the model that
served <b>before</b> this batch. Good forgetting means the new model's column looks like the oracle's.</p>
<table><tr><th>Metric</th><th class="num">New model</th><th class="num">Oracle</th><th class="num">Before</th><th>What it means</th></tr>
{% for key, label, unit, meaning in metric_rows %}<tr><td>{{ label }}</td><td class="num">{{ m.get(key)|fmt }}{{ unit }}</td><td class="num">{{ o.get(key)|fmt }}{{ unit if o.get(key) is not none else "" }}</td><td class="num">{{ c.get(key)|fmt }}{{ unit }}</td><td class="small">{{ meaning }}</td></tr>
{% endfor %}</table>
{% if gaps %}<p>Average gap to the oracle: <b>{{ gaps.get("avg_gap")|fmt }}</b> points (SalUn convention: mean of
|difference| over forget, retain and test accuracy and MIA-Efficacy; 0 = indistinguishable from retraining);
{{ gaps.get("avg_gap_mumis")|fmt }} points in the MU-Mis convention (forget, retain, test accuracy).
Output divergence to the oracle on the erased samples: {{ gaps.get("js_forget_to_oracle")|fmt(4) }} nats (Jensen-Shannon).</p>{% endif %}
{% if conventions %}<p class="small">Membership-inference conventions used: {% for k, v in conventions.items() %}<code>{{ k }}</code> = {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}

<h2 id="evidence">Membership evidence per request</h2>
{% if ev %}<p>Every erased sample was scored by a membership-inference attack (<code>{{ ev.attack }}</code>, {{ ev.mode }},
calibrated with {{ ev.k }} reference models trained on random halves of the training data; reference set
<code>{{ ev.reference.key }}</code>, content hash <code>{{ (ev.reference.sha256 or "")[:16] }}…</code>, split seed
{{ ev.reference.seed }}) and compared with {{ ev.null_size }} test images no model was trained on. A request is <b>still
detectable</b> when its samples, taken together (Fisher's method), look more like training data than those images,
after correcting for testing {{ ev.family_size - 1 }} request(s) and the batch at once (Holm, α = {{ ev.alpha }}).
The same test on the model serving <b>before</b> this batch shows whether there was any detectable memorisation to
remove.</p>
<table><tr><th>Request</th><th class="num">Samples</th><th class="num">p after (adjusted)</th><th>After</th><th class="num">p before (adjusted)</th><th>Before</th><th>In words</th></tr>
{% for r in ev.requests %}<tr><td><code>{{ r.request_id }}</code></td><td class="num">{{ r.samples }}</td>
<td class="num">{{ r.p_value|p }} ({{ r.adjusted_p|p }})</td>
<td>{% if r.verdict == "still detectable" %}<span class="fail">still detectable</span>{% else %}<span class="ok">not detectable</span>{% endif %}</td>
<td class="num">{{ r.before_p_value|p }} ({{ r.before_adjusted_p|p }})</td><td>{{ r.before_verdict or "—" }}</td>
<td class="small">{{ r.statement }}</td></tr>
{% endfor %}</table>
{% set bt = ev.batch %}<p>The batch as a whole: <b>{{ bt.share|pct1 }}</b> of its {{ bt.samples }} erased sample(s) are
detected at a {{ ev.fpr|pct1 }} false-positive rate ({{ bt.confidence|pct1 }} interval {{ bt.ci[0]|pct1 }}–{{ bt.ci[1]|pct1 }}),
against {{ bt.floor.share|pct1 }} of {{ bt.floor.samples }} never-seen images (the false-positive floor,
{{ bt.floor.ci[0]|pct1 }}–{{ bt.floor.ci[1]|pct1 }}){% if bt.before %}; before this batch {{ bt.before.share|pct1 }}{% endif %}{% if bt.oracle %};
the oracle {{ bt.oracle.share|pct1 }}{% endif %}. Adjusted p = {{ bt.adjusted_p|p }}: the erased samples are
{% if bt.distinguishable %}<span class="fail">distinguishable</span>{% else %}<span class="ok">not distinguishable</span>{% endif %}
from never-seen data. {% if bt.min_detectable_share is not none %}With this many samples the test catches a detected share
of {{ bt.min_detectable_share|pct1 }} or more with {{ ev.power|pct1 }} power.{% else %}With this many samples the test
cannot reach {{ ev.power|pct1 }} power at any detected share.{% endif %}</p>
{% for n in ev.notes %}<div class="warn">{{ n }}</div>{% endfor %}
<p class="small">Verification took {{ ev.seconds.get("after")|fmt }} s (scoring the erased samples and the never-seen
images with the new model; the reference models' scores were computed when they were trained).</p>
{% else %}<p>No membership evidence was computed for this batch (evidence or reference models switched off).</p>{% endif %}

<h2 id="plots">Plots</h2>
{% for p in plots %}<h3>{{ p.title }}</h3><p class="small">{{ p.caption }}</p><img alt="{{ p.title }}" src="data:image/png;base64,{{ p.png }}">
{% else %}<p>No per-sample outputs were saved for this batch, so there are no plots.</p>{% endfor %}

<h2 id="gates">Gates and promotion</h2>
<p>A new model replaces the serving one only if every enabled gate passes{% if exact %} — except a model
retrained from scratch, which never saw the erased samples and is exact by construction: its gates are shown for
information{% endif %}.</p>
<table><tr><th>Gate</th><th>What it protects</th><th>Measured</th><th>Threshold</th><th>Verdict</th></tr>
{% for name, g in gates.items() %}<tr><td>{{ name }}</td><td class="small">{{ meaning.get(name, "") }}</td><td>{{ g.detail }}</td><td class="num">{{ g.threshold|fmt }}</td>
<td>{% if not g.enabled %}<span class="off">off</span>{% elif g.passed %}<span class="ok">passed</span>{% else %}<span class="fail">failed</span>{% endif %}</td></tr>
{% endfor %}</table>
<p>Promotion decision: <b>{{ promotion.action }}</b>. {{ promotion.reason }}</p>
{% if rejected %}<div class="warn">An unlearned model was tried first: version {{ rejected.model_version }}
({{ rejected.method }}) failed the gate(s) {{ rejected.failed|join(", ") }} and was not promoted; it stays in the
registry for the record. Its forget accuracy was {{ rejected.metrics.get("forget_acc")|fmt }} %, test accuracy
{{ rejected.metrics.get("test_acc")|fmt }} %.{% for a in attempts[1:] %} Then version {{ a.model_version }}
({{ a.method }}, rule <code>{{ a.rule }}</code>) failed the gate(s) {{ a.failed|join(", ") }}{% if a.evidence %}; the
evidence still detected {{ a.evidence.detectable_requests|length }} request(s){% endif %}.{% endfor %}</div>{% endif %}

<h2 id="erasure">Erasure</h2>
<p>The erased samples were removed from the dataset: version {{ dv_before.get("version", "-") }} →
<b>{{ dv_after.get("version", "-") }}</b> ({{ dv_after.get("train_samples", "-") }} training samples left,
{{ dv_after.get("erased_total", "-") }} erased in total). DVC content id of the new version:
<code>{{ dv_after.get("dvc_md5") or "-" }}</code>.</p>
{% if superseded %}<p>Models that still hold data erased by this or an earlier batch are now <b>superseded</b>: they
never serve again, and a rollback refuses them.</p>
<table><tr><th>Model version</th><th>Holds data erased by</th><th>Why</th></tr>
{% for s in superseded %}<tr><td>{{ s.version }}</td><td><code>{{ s.erased_by_batch }}</code></td><td>{{ s.reason }}</td></tr>{% endfor %}</table>{% endif %}
{% if purge_lines %}<h3>Stored copies</h3>{% for line in purge_lines %}<p>{{ line }}</p>{% endfor %}
<p class="small">The full evidence (object ids, per-store scan counts) is in every receipt of this batch.</p>{% endif %}

<h2 id="receipts">Receipts</h2>
<p>One deletion receipt per honoured request. Each links the request to the sample list (manifest), the dataset
versions, this run, the model version and its metrics, and the verdict; each carries the SHA-256 of its content and
of the previous receipt, so editing or removing any receipt is detectable (<code>forgetflow receipt verify</code>).</p>
<table><tr><th class="num">#</th><th>Request</th><th>SHA-256</th><th>Previous</th><th>File</th></tr>
{% for r in receipts %}<tr><td class="num">{{ r.seq }}</td><td><code>{{ r.request_id }}</code></td><td><code>{{ r.sha256[:16] }}…</code></td><td><code>{{ (r.prev_sha256 or "-")[:16] }}</code></td><td class="small">{{ r.path }}</td></tr>
{% else %}<tr><td colspan="5">No receipts recorded.</td></tr>{% endfor %}</table>

<h2 id="glossary">How to read this report</h2>
<ul class="small">
<li><b>Champion</b>: the model that serves. <b>Challenger</b>: the newest candidate, waiting for the gates or a person.</li>
<li><b>Oracle</b>: the same training recipe run from scratch without the erased samples — what perfect erasure looks like.</li>
<li><b>Unlearning</b>: editing the serving model so it behaves like the oracle, at a fraction of the cost. <b>Retraining</b>: building the oracle itself; exact, but slow.</li>
<li><b>Membership inference</b>: an attack that guesses whether a sample was used for training. After erasure the attack should do no better on the erased samples than on samples the model never saw.</li>
<li>Accuracies are in percent; "points" are differences between percentages.</li>
</ul>
</body></html>
"""

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
    "escalation_factor": "Budget multiplier of the escalation (evidence.escalation_budget)",
    "escalated_budget": "Settings of the escalated unlearning",
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


def _pct1(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


def _p(value: Any) -> str:
    """A p-value readably: three significant digits, scientific below 0.001."""
    if value is None:
        return "—"
    v = float(value)
    return f"{v:.2e}" if v < 1e-3 else f"{v:.3g}"


def evidence_lines(ev: Mapping[str, Any] | None) -> list[str]:
    """The batch's membership evidence in a few lines for a terminal (``forgetflow batch run``)."""
    if not ev:
        return []
    b = ev["batch"]
    lines = [f"  evidence ({ev['attack']}, K={ev['k']}, α={ev['alpha']:g}): "
             f"{len(ev['detectable_requests'])} of {len(ev['requests'])} request(s) still detectable; forget set "
             f"{_pct1(b['share'])} detected vs never-seen {_pct1(b['floor']['share'])} (adjusted p {_p(b['adjusted_p'])}); "
             f"verified in {ev['seconds'].get('after', 0):.2f} s"]
    for r in ev["requests"]:
        lines.append(f"    {r['request_id']}: {r['verdict']} (adjusted p {_p(r['adjusted_p'])}"
                     + (f", before {_p(r.get('before_adjusted_p'))}" if "before_adjusted_p" in r else "") + ")")
    return lines


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


def membership_plot(scores: Mapping[str, Any], ev: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Histogram of membership scores: erased samples before and after, never-seen images, the oracle."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    after = scores.get("after")
    if not after or not len(after.get("forget", [])):
        return []
    series = [(np.asarray(after["null"], float), "never-seen test images (new model)", "#333333", "step"),
              (np.asarray((scores.get("before") or {}).get("forget", []), float), "erased samples, before", "#999999",
               "stepfilled"),
              (np.asarray(after["forget"], float), "erased samples, new model", "#2a6fdb", "stepfilled"),
              (np.asarray((scores.get("oracle") or {}).get("forget", []), float), "erased samples, oracle", "#e07b00",
               "stepfilled")]
    values = np.concatenate([s[0] for s in series if len(s[0])])
    values = values[np.isfinite(values)]
    bins = np.linspace(float(values.min()), float(values.max()) + 1e-9, 40)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for data, label, colour, kind in series:
        if len(data):
            ax.hist(np.clip(data, bins[0], bins[-1]), bins=bins, density=True, alpha=0.45 if kind != "step" else 1.0,
                    label=label, color=colour, histtype=kind, edgecolor=colour, linewidth=1.2)
    threshold = (ev or {}).get("threshold")
    if threshold is not None:
        ax.axvline(threshold, color="#a4161a", linestyle="--", linewidth=1,
                   label=f"detection threshold ({100 * (ev or {}).get('fpr', 0.01):.0f} % false positives)")
    ax.set_xlabel(f"membership score ({(ev or {}).get('attack', 'attack')}; higher = more like training data)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return [{"title": "Membership scores", "png": _png(fig),
             "caption": "How 'member-like' each erased sample looks to the attack, before and after this batch, next "
                        "to images no model trained on. After erasure the erased samples' scores should sit where "
                        "the never-seen images' do (and where the oracle's do, when one was trained); scores to "
                        "the right of the dashed line count as detected."}]


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
    ev = doc.get("evidence")
    if ev:
        detectable = ev.get("detectable_requests") or []
        lines.append(f"Membership evidence ({ev.get('attack')} with {ev.get('k')} reference models, α = {ev.get('alpha')}): "
                     + (f"{len(detectable)} request(s) still detectable after unlearning ({', '.join(detectable[:5])})."
                        if detectable else "no request is detectable after unlearning")
                     + ("" if detectable else (
                         "; the erased samples as a whole are "
                         + ("still distinguishable from never-seen images." if ev["batch"]["distinguishable"]
                            else "not distinguishable from never-seen images."))))
    dv = doc.get("data_version") or {}
    lines.append(f"The samples were deleted from the dataset (new version {dv.get('version', '-')}), and "
                 f"{len(doc.get('receipts_detail') or [])} deletion receipt(s) were issued.")
    return lines


def render_html(doc: Mapping[str, Any], outputs: Mapping[str, np.ndarray] | None = None,
                scores: Mapping[str, Any] | None = None) -> str:
    """The whole report page (self-contained: styles inline, plots as base64 PNG).

    ``scores`` is the stored evidence record's ``scores`` (role → forget / null attack scores), for the plot of
    membership scores.
    """
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    env.filters["pct1"] = _pct1
    env.filters["p"] = _p
    mia_keys = set(doc.get("metrics") or {}) | set(doc.get("oracle") or {})
    rows = [r for r in METRICS if r[0] in mia_keys or r[0] in ("forget_acc", "retain_acc", "test_acc")]
    gates = doc.get("gates") or {}
    return env.from_string(TEMPLATE).render(
        b=doc, generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), summary=summary_lines(doc),
        requests=doc.get("requests_detail") or [], quarantined=doc.get("quarantined") or {},
        validation=doc.get("validation"), frame_names=FRAME_NAMES, decision=doc.get("decision") or {},
        measure_names=MEASURE_NAMES, metric_rows=rows, m=doc.get("metrics") or {}, o=doc.get("oracle") or {},
        c=doc.get("champion_before") or {}, gaps=doc.get("gaps") or {}, conventions=doc.get("mia_conventions") or {},
        plots=(membership_plot(scores, doc.get("evidence")) if scores else []) + (plots(outputs, doc) if outputs else []),
        gates=gates, meaning=MEANING, ev=doc.get("evidence"),
        exact=(doc.get("decision") or {}).get("action") == "retrain", promotion=doc.get("promotion") or {},
        rejected=doc.get("rejected"), attempts=doc.get("attempts") or [], dv_before=(doc.get("data_version_before") or {}),
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
    ev = doc.get("evidence")
    if ev:
        lines += ["", f"| request | samples | adjusted p after | after | adjusted p before | before |",
                  "|---|---:|---:|---|---:|---|"]
        for r in ev["requests"]:
            lines.append(f"| {r['request_id']} | {r['samples']} | {_p(r['adjusted_p'])} | {r['verdict']} | "
                         f"{_p(r.get('before_adjusted_p'))} | {r.get('before_verdict') or '—'} |")
    decision, promotion = doc.get("decision") or {}, doc.get("promotion") or {}
    lines += ["", f"**Unlearn or retrain:** {decision.get('action')} ({decision.get('rule')}): {decision.get('reason')}",
              "", f"**Promotion:** {promotion.get('action')}: {promotion.get('reason')}", "",
              f"Full report: `{report_path}`"]
    return "\n".join(lines)
