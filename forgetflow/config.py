"""The schema of ``params.yaml``: the one configuration source, parsed once into frozen pydantic models.

Everything a user may change lives in params.yaml; flows, tasks, DVC stages and the CLI all load it
through ``Project.load`` (:func:`load_params` here, then :func:`forgetflow.project.check_params`), with dotted
overrides (``--set unlearn.method=mu-mis``). Unknown keys are errors naming the key, and every method section
is validated, not only the selected one.

The defaults below are the one source of defaults: the shipped params.yaml spells out the same values
(a contract test keeps them equal), and tests set their own cheap values (tests/conftest.py DIGITS_PARAMS).
This module imports nothing of forgetflow but its errors, so every other module may import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgetflow.errors import ConfigError

class Strict(BaseModel):
    """Base of every config model: unknown keys are errors; values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageFolderParams(Strict):
    """Where the image-folder source finds its CSVs (MUFAC layout) and how it reads them."""

    train_csv: str = "custom_train_dataset.csv"
    test_csv: str | None = "custom_val_dataset.csv"
    unseen_csv: str | None = "custom_test_dataset.csv"
    path_column: str = "image_path"
    label_column: str = "age_class"
    subject_pattern: str | None = r"^(F\d{4})"
    image_size: int = Field(64, ge=8, le=512)
    grayscale: bool = False


class DataParams(Strict):
    """Which dataset, where its raw files are, and how a first version is built from them."""

    dataset: str = "fashion-mnist"
    raw: str | None = Field(None, description="raw files folder; empty = the source's default")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5, description="only for sources without a test split")
    subject_size: tuple[int, int] = Field((2, 6), description="min, max samples per synthetic data subject")
    shard_size: int = Field(4096, ge=16)
    image_folder: ImageFolderParams = Field(default_factory=ImageFolderParams)

    @field_validator("subject_size")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] <= value[1]:
            raise ValueError("subject_size must be [min, max] with 1 <= min <= max")
        return value


class ModelParams(Strict):
    """Architecture of the original model (and of every model derived from it)."""

    arch: str = "small-cnn"
    width: int = Field(16, ge=4, description="channels of the first conv block (small-cnn)")


class TrainParams(Strict):
    """The training recipe of the original model; the retrained oracle uses the same recipe."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    device: str = "auto"
    deterministic: bool = True
    progress: bool = True


class PathsParams(Strict):
    """Folders, relative to the folder holding params.yaml."""

    data: str = "data"
    artifacts: str = "artifacts"
    state: str = "state"
    mlflow: str = "mlflow"


class LedgerParams(Strict):
    """The request ledger: any SQLAlchemy URL (relative SQLite paths are resolved from the project)."""

    url: str = "sqlite:///state/ledger.db"


class TrackingParams(Strict):
    """MLflow: tracking store, artifact root, experiment and registered model name."""

    uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str = "mlflow/artifacts"
    experiment: str = "forgetflow"
    model_name: str = "forgetflow-classifier"


class VersioningParams(Strict):
    """DVC: the remote that dataset versions are pushed to, and whether data.dvc is committed to git."""

    enabled: bool = True
    remote: str = "forgetflow"
    remote_url: str = "state/dvc-remote"
    remote_options: dict[str, str] = Field(
        default_factory=dict, description="more DVC settings of the remote, e.g. {endpointurl: http://minio:9000, "
        "region: eu-west-1} for an S3-compatible store; credentials come from the environment (AWS_*), not from here")
    git_commit: bool = False


class PurgeParams(Strict):
    """Erasure in storage: after every batch, remove stored objects that still hold erased samples."""

    enabled: bool = Field(True, description="purge after every deletion batch (the batch's commit point)")
    remote: bool = Field(True, description="also garbage-collect the DVC remote (dvc gc --cloud), not only the cache")
    keep_repos: list[str] = Field(default_factory=list,
                                  description="other DVC repositories sharing this cache/remote: their workspaces are kept")
    prepared: Literal["strip", "keep"] = Field(
        "strip", description="strip: rewrite every dataset-version copy under artifacts/ (prepared, bench/<dataset>) "
                             "without erased samples; keep: leave them (the receipts then name them)")
    models: float | None = Field(
        0, ge=0, description="days the weights of a model trained on erased samples are kept once it is superseded "
                             "(registry versions and cached models; metadata stays); 0 = deleted by the same purge, "
                             "null = kept indefinitely (the receipts then name them)")


class RunnerParams(Strict):
    """Where Prefect runs the tasks of fan-out flows (benchmark cells and their oracles, reference models)."""

    kind: Literal["local", "dask"] = Field("local", description="local = threads in the flow's process; dask = prefect-dask")
    max_workers: int = Field(1, ge=1, description="local: threads (1 = one task at a time, for clean timings)")
    address: str | None = Field(None, description="dask: scheduler address (tcp://host:8786); null = start a LocalCluster")
    n_workers: int = Field(2, ge=1, description="dask LocalCluster: worker processes")
    threads_per_worker: int = Field(1, ge=1, description="dask LocalCluster: threads per worker process")


class BatchParams(Strict):
    """How a deletion batch claims requests, treats invalid ones, holds its lease and shares the GPU."""

    max_requests: int = Field(10_000, ge=1)
    on_invalid: Literal["quarantine", "stop"] = "quarantine"
    gpu_concurrency: int = Field(1, ge=1, description="GPU tasks (tagged 'gpu') that may run at once: the number of "
                                                      "GPU slot lock files (docs/operations.md)")
    gpu_slots_dir: str | None = Field(None, description="folder of the GPU slot lock files; null = state/locks/gpu "
                                                        "(a host-wide folder makes projects on one machine share them)")
    lease_seconds: float = Field(60.0, ge=1.0, description="the batch lock is a lease: stale (recoverable from any "
                                                           "host) this long after its last renewal")
    heartbeat_seconds: float = Field(10.0, gt=0.0, description="how often the running batch renews its lease")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> "BatchParams":
        if self.heartbeat_seconds * 2 > self.lease_seconds:
            raise ValueError(f"heartbeat_seconds ({self.heartbeat_seconds:g}) must be at most half of lease_seconds "
                             f"({self.lease_seconds:g}): one late renewal must not lose the lease")
        return self


class UnlearnParams(Strict):
    """Which method runs, per batch or per request reason, and its hyper-parameter overrides.

    Method names and sections are checked against the registry when a project loads
    (:func:`forgetflow.project.check_params`): this schema sits below the registries and imports none of them.
    """

    method: str = Field("auto", description="a registered method, or auto = chosen from the request reasons")
    by_reason: dict[str, str] = Field(
        default_factory=lambda: {"privacy": "aru", "other": "aru", "mislabelled": "neggrad-plus", "poisoned": "neggrad-plus"},
        description="the method for each request reason (every reason needs one); the defaults are the methods "
        "measured best for each kind of request (docs/results.md)")
    preset: str | None = Field("auto", description="scenario preset; auto = from the reasons; null = none")
    preset_setting: str = Field("default", description="which benchmark setting's presets apply: default (tuned on the "
                                "serving recipe) or memorising (tuned where the model memorises its training "
                                "samples, docs/results.md); a method without one falls back to default's, and says so")
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                               description="per-method hyper-parameter overrides, by method name")


class EvaluateParams(Strict):
    """What is measured after unlearning."""

    oracle: bool = Field(False, description="also retrain the oracle for every batch (cached per manifest) and report "
                                            "the gap to it; off in production: the per-batch evidence comes from the "
                                            "reference models and the scheduled oracle audit is the exact check")
    batch_size: int = Field(1024, ge=1)
    mia_max_shadow: int = Field(5000, ge=10, description="cap on each side of the SVC shadow set (SalUn MIA)")


class EvidenceParams(Strict):
    """Membership evidence per request after unlearning (docs/verification.md): every forgotten sample's attack
    score (the ``references.attack``) against never-seen test samples under the same model."""

    enabled: bool = Field(True, description="score the forget set after (and before) unlearning in every batch; the "
                                            "forgetting and privacy gates decide on it")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="family-wise error rate: Holm over every request of the batch "
                                                         "plus the batch-level test")
    fpr: float = Field(0.01, gt=0, lt=0.5, description="a sample counts as detected above the (1 - fpr) quantile of "
                                                       "never-seen samples' scores")
    null_samples: int = Field(2000, ge=20, description="never-seen (test) samples scored as the null, at most; half set "
                                                       "the detection threshold, half measure the false-positive floor")
    power: float = Field(0.8, gt=0, lt=1, description="each gate states the smallest effect it catches with this power")
    escalation_budget: float | None = Field(
        2.0, gt=1, description="when the evidence still detects membership, unlearn again once with this multiple of "
                               "the method's step budget (forget_passes with its floor and cap, or epochs) before retraining; null = retrain at once (retrain.on_gate_failure)")


class UtilityGate(Strict):
    """Test accuracy against the champion's."""

    enabled: bool = Field(True, description="false = the gate is off (reported as off, never blocks)")
    max_test_acc_drop: float = Field(2.0, ge=0, description="points of test accuracy the challenger may lose vs the champion")
    min_test_acc: float | None = Field(None, ge=0, le=100, description="absolute floor of test accuracy in points; null = none")


class ForgettingGate(Strict):
    """No request of the batch is still detectably a member (and, when an oracle ran, forget accuracy near its)."""

    enabled: bool = Field(True, description="false = the gate is off (reported as off, never blocks)")
    reference: Literal["auto", "evidence", "oracle", "test"] = Field(
        "auto", description="evidence: no request still detectable (Holm at evidence.alpha); oracle: |forget acc - "
                            "oracle's| <= max_forget_acc_gap; test: forget acc - own test acc <= max_forget_acc_gap; "
                            "auto: evidence, plus the oracle comparison when an oracle ran (test when neither exists)")
    max_forget_acc_gap: float = Field(5.0, ge=0, description="points of forget accuracy (oracle and test references)")


class PrivacyGate(Strict):
    """The forget set as a whole is not distinguishable from never-seen data (and, with an oracle, MIA near its)."""

    enabled: bool = Field(True, description="false = the gate is off (reported as off, never blocks)")
    reference: Literal["auto", "evidence", "oracle", "chance"] = Field(
        "auto", description="evidence: the forget set's detected share at evidence.fpr is not above never-seen "
                            "samples' (Holm at evidence.alpha); oracle: |SalUn MIA-efficacy - oracle's| <= max_mia_gap; "
                            "chance: |loss-attack AUC forget vs test - 0.5| x 100 <= max_mia_gap; auto: evidence, plus "
                            "the oracle comparison when an oracle ran (chance when neither exists)")
    max_mia_gap: float = Field(10.0, ge=0, description="points (oracle and chance references)")


class CostGate(Strict):
    """Unlearning wall time against the last recorded full retrain of the serving recipe."""

    enabled: bool = Field(True, description="false = the gate is off (reported as off, never blocks)")
    max_time_ratio: float = Field(0.5, gt=0, description="unlearning wall time / the last recorded full retrain's "
                                                         "(forgetflow train, a retrain batch or an oracle audit)")


class GateParams(Strict):
    """Promotion gates: a challenger replaces the champion only if every enabled gate passes.

    One section per gate registered in ``forgetflow/gates.py`` (a contract test keeps the two in step);
    docs/promotion.md explains each gate in plain words.
    """

    utility: UtilityGate = Field(default_factory=UtilityGate)
    forgetting: ForgettingGate = Field(default_factory=ForgettingGate)
    privacy: PrivacyGate = Field(default_factory=PrivacyGate)
    cost: CostGate = Field(default_factory=CostGate)


class PromotionParams(Strict):
    """How a challenger becomes champion: at once when the gates pass, or after a person approves."""

    approval: Literal["auto", "manual"] = Field(
        "auto", description="auto: promote when every enabled gate passes; manual: register the challenger and wait "
                            "for `forgetflow promote` or an approval of the promotion flow")
    approval_timeout_hours: float = Field(72.0, gt=0, description="how long the promotion flow waits for a person")


class RetrainParams(Strict):
    """When a batch retrains from scratch on the retain set (exact) instead of unlearning; see docs/promotion.md."""

    max_forgotten_fraction: float | None = Field(
        0.1, gt=0, le=1, description="retrain once the samples erased since the last full retrain (this batch included) "
                                     "exceed this fraction of that retrain's training set; null = never for this reason")
    max_quality_drift: float | None = Field(
        3.0, ge=0, description="retrain when the champion's test accuracy is more than this many points below the last "
                               "full retrain's (or the last audit's); null = never for this reason")
    on_gate_failure: bool = Field(True, description="retrain when the unlearned model fails the gates")


class AuditParams(Strict):
    """Oracle audits: a scheduled retrain on the current dataset version, compared with the champion."""

    max_test_acc_gap: float = Field(2.0, ge=0, description="drift threshold: points by which the retrained model's test "
                                                           "accuracy may exceed the champion's")
    replace: bool = Field(True, description="replace the champion by the retrained model when the drift is over the "
                                            "threshold or the champion holds erased data")
    cron: str | None = Field("0 3 * * 0", description="when `forgetflow serve` runs the oracle-audit deployment (cron, "
                                                      "in serve.timezone); null = only on demand")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        return _cron(value)


def _cron(value: str | None) -> str | None:
    """A five-field cron expression (minute hour day-of-month month day-of-week), or None = off."""
    if value is None or not str(value).strip():
        return None
    fields = str(value).split()
    if len(fields) != 5:
        raise ValueError(f"{value!r} is not a five-field cron expression (e.g. '0 2 * * *' = daily at 02:00)")
    return " ".join(fields)


class ServeParams(Strict):
    """`forgetflow serve`: the deployments on a Prefect server (schedule, trigger, backlog check)."""

    name: str = Field("forgetflow", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                      description="deployment name of every served flow and the project label its events carry")
    schedule_cron: str | None = Field("0 2 * * *", description="scheduled batch (cron); null = no schedule")
    timezone: str = Field("UTC", description="time zone of the cron expressions")
    trigger_pending: int = Field(100, ge=1, description="N: a batch is due once this many requests are pending")
    trigger_oldest_hours: float = Field(24.0, gt=0, description="T: ... or once the oldest pending request waited this long")
    review_window_minutes: float = Field(0.0, ge=0, description="a triggered batch starts this long after the trigger fires")
    trigger_cooldown_minutes: float = Field(10.0, ge=0, description="after firing, the trigger ignores due events this long")
    check_cron: str | None = Field("*/15 * * * *", description="backlog check (cron): fires the trigger when a batch is due; null = off")
    wait_for_batch_minutes: float = Field(60.0, ge=0, description="a served batch waits this long for a running batch to end")
    emit_events: bool = Field(True, description="request intake emits forgetflow.request.accepted when PREFECT_API_URL is set")

    @field_validator("schedule_cron", "check_cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        return _cron(value)


class IntakeParams(Strict):
    """`forgetflow intake`: the HTTP intake for upstream systems (token: $FORGETFLOW_INTAKE_TOKEN)."""

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 = every interface)")
    port: int = Field(8787, ge=1, le=65535)
    max_items: int = Field(10_000, ge=1, description="most requests in one POST (a list is all-or-nothing)")
    workers: int = Field(1, ge=1, le=64, description="intake processes sharing the port (uvicorn workers)")
    max_age_days: float = Field(
        365, gt=0, le=36_500,
        description="oldest received_at accepted, in days before now, on every intake path (HTTP, CLI add/import, "
                    "forgetflow.ledger.make_request): an older date is almost surely wrong (year 1, the Unix epoch) and "
                    "would jump the queue and fire the backlog trigger; raise it to import an older backlog")


class ReferenceParams(Strict):
    """Reference models of the serving recipe and the per-sample attacks built on them (docs/verification.md)."""

    enabled: bool = Field(True, description="train reference models per dataset version (`forgetflow train`, the audit, "
                                            "`forgetflow references`) and run the per-sample attacks lira and rmia")
    k: int = Field(4, ge=2, le=1024, description="reference models; even: every training sample is IN for exactly k/2 "
                                                 "of them (4 small CNNs fit a 2-core CPU: docs/verification.md; GPUs: more)")
    seed: int = Field(0, ge=0, description="seed of the IN/OUT assignment and of the reference trainings")
    attack: Literal["lira", "rmia"] = Field("lira", description="the per-sample attack the evidence uses")
    on_missing: Literal["train", "skip"] = Field(
        "train", description="a batch that finds no usable reference set: train one (and say so) or go without")
    lira_mode: Literal["auto", "online", "offline"] = Field(
        "auto", description="LiRA: online needs usable IN references for every scored sample; auto picks it then")
    lira_variance: Literal["auto", "global", "binned", "per-sample"] = Field(
        "auto", description="LiRA: one pooled variance, pooled per stratum of the sample's mean (binned), each "
                            "sample's own, or auto (own with lira_min_own references, else one pooled)")
    lira_min_own: int = Field(16, ge=2, description="LiRA auto variance: per-sample only when every sample has this "
                                                    "many usable references on the side in question")
    rmia_gamma: float = Field(1.0, gt=0, description="RMIA: likelihood-ratio threshold gamma against population samples")
    rmia_a: float = Field(0.3, ge=0, le=1, description="RMIA: offline correction p(x) = ((1+a) p_out(x) + 1 - a) / 2")
    rmia_mode: Literal["auto", "online", "offline"] = Field("auto", description="RMIA: online uses IN references' p(x)")
    rmia_population: int = Field(2500, ge=10, description="RMIA: population samples z (a seeded subset of the "
                                                          "validation split, never trained on by any model)")

    @field_validator("k")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"k must be even (every training sample is IN for exactly k/2 references), not {value}")
        return value


class Params(Strict):
    """The whole of params.yaml."""

    seed: int = Field(0, ge=0)
    paths: PathsParams = Field(default_factory=PathsParams)
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    train: TrainParams = Field(default_factory=TrainParams)
    ledger: LedgerParams = Field(default_factory=LedgerParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    versioning: VersioningParams = Field(default_factory=VersioningParams)
    purge: PurgeParams = Field(default_factory=PurgeParams)
    runner: RunnerParams = Field(default_factory=RunnerParams)
    references: ReferenceParams = Field(default_factory=ReferenceParams)
    batch: BatchParams = Field(default_factory=BatchParams)
    unlearn: UnlearnParams = Field(default_factory=UnlearnParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    evidence: EvidenceParams = Field(default_factory=EvidenceParams)
    gates: GateParams = Field(default_factory=GateParams)
    promotion: PromotionParams = Field(default_factory=PromotionParams)
    retrain: RetrainParams = Field(default_factory=RetrainParams)
    audit: AuditParams = Field(default_factory=AuditParams)
    serve: ServeParams = Field(default_factory=ServeParams)
    intake: IntakeParams = Field(default_factory=IntakeParams)

    @model_validator(mode="after")
    def _gate_references_are_measured(self) -> "Params":
        for name, gate in (("forgetting", self.gates.forgetting), ("privacy", self.gates.privacy)):
            if gate.enabled and gate.reference == "oracle" and not self.evaluate.oracle:
                raise ValueError(f"gates.{name}.reference is oracle but evaluate.oracle is false "
                                 "(turn the oracle on, or use auto)")
            if gate.enabled and gate.reference == "evidence" and not self.evidence.enabled:
                raise ValueError(f"gates.{name}.reference is evidence but evidence.enabled is false "
                                 "(turn the evidence on, or use auto)")
        return self


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` → (``a.b``, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key, value


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested dict (creating sections as needed); returns the dict."""
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_params(path: Path | str, overrides: Mapping[str, Any] | None = None) -> Params:
    """Read params.yaml, apply dotted overrides, validate once; every problem is a ``ConfigError``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: not found (run from the project folder or pass --params)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    apply_overrides(data, dict(overrides or {}))
    return validate_params(data, str(path))


def validate_params(data: dict[str, Any], where: str = "params") -> Params:
    """Validate a params mapping into ``Params``; the error names the first bad key."""
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {loc}: {err['msg']}{more}") from exc


def resolve_path(root: Path, value: str) -> Path:
    """A path from params.yaml: absolute as given, else relative to the project root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (root / p)


def resolve_sqlalchemy_url(root: Path, url: str) -> str:
    """Make a relative ``sqlite:///rel/path.db`` absolute against the project root; other URLs pass."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((root / url[len(prefix):]).resolve())
    return url
