"""On CUDA: a method, and the unlearn task as a batch runs it. Skipped (not failed) without a CUDA device;
run with ``pytest -m gpu`` on a machine that has one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forgetflow import pipeline
from forgetflow.methods import METHODS, data_for
from forgetflow.models import clone, load_checkpoint, same_architecture
from forgetflow.project import Project
from forgetflow.runtime import RunContext

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_a_method_unlearns_on_cuda(digits_random):
    spec = METHODS.get("neggrad-plus")
    s = digits_random.splits
    data = data_for(spec, s.forget, s.retain, s.num_classes, digits_random.recipe)
    run = RunContext.create(0, "cuda")
    model = spec.unlearn(clone(digits_random.original.model).to(run.device), data, spec.resolve(None, {"forget_passes": 1.0}), run)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    assert same_architecture(model.cpu(), digits_random.original.model)
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())


def unlearn_task_on(project: Project, device: str):
    """The unlearn task of a one-request batch, with ``train.device`` set to ``device``; returns its candidate."""
    from tasks.unlearn import unlearn_candidate

    project = Project.load(project.params_path, {"train.device": device})
    version = pipeline.current_version(project)
    manifest = pipeline.resolve_requests(version, "b-gpu", [{"request_id": "r1", "reason": "privacy",
                                                             "subject_id": version.subjects()[0], "sample_id": None}])
    path = pipeline.manifest_path(project, "b-gpu")
    manifest.write(path)
    return unlearn_candidate.fn(project, "b-gpu", str(path.relative_to(project.root)), None)


def test_the_unlearn_task_runs_on_cuda(digits_project):
    candidate = unlearn_task_on(digits_project, "cuda")
    assert candidate.run["device"].startswith("cuda") and candidate.method == "neggrad-plus"
    assert candidate.steps and all(key == "unlearn/loss" for key, _, _ in candidate.steps)
    model = load_checkpoint(Path(candidate.path))
    assert all(torch.isfinite(p).all() for p in model.state_dict().values() if p.is_floating_point())
