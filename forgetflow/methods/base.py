"""The method interface: a registered function plus what it declares about itself.

``unlearn(model, data, cfg, run) -> model`` — the NeurIPS-2023 challenge contract, widened. A method may
modify ``model`` in place and returns the unlearned model, which must have the original architecture;
callers always pass a copy they own. ``data`` holds only the sets the method's ``needs`` declare: any other
set raises ``MethodContractError`` on access, so a method cannot quietly use what it did not ask for.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict
import torch
from torch import nn

from forgetflow.data.samples import SampleSet
from forgetflow.errors import ConfigError, MethodContractError, MethodDivergedError
from forgetflow.registry import Registry
from forgetflow.runtime import RunContext
from forgetflow.training import Recipe


class Needs(enum.Flag):
    """What data a method may receive."""

    FORGET = enum.auto()
    RETAIN = enum.auto()
    TRAIN = enum.auto()  # the whole training split with stable sample uids (forget + retain, in one set)

    def describe(self) -> str:
        """``forget``, ``forget+retain``, ``forget+train (with sample ids)``..."""
        parts = []
        if Needs.FORGET in self:
            parts.append("forget")
        if Needs.RETAIN in self:
            parts.append("retain")
        if Needs.TRAIN in self:
            parts.append("train (with sample ids)")
        return "+".join(parts) or "nothing"


class MethodConfig(BaseModel):
    """Base of every method's hyper-parameters: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class UnlearnData:
    """The sets handed to a method; sets outside its declared needs raise on access."""

    def __init__(
        self,
        needs: Needs,
        forget: SampleSet,
        num_classes: int,
        recipe: Recipe,
        retain: SampleSet | None = None,
        train: SampleSet | None = None,
        method: str = "?",
    ) -> None:
        self._needs = needs
        self._method = method
        self._forget = forget
        self._retain = retain
        self._train = train
        self.num_classes = num_classes
        self.recipe = recipe  # the original training recipe (a retrain baseline reuses it)
        for flag, value, name in ((Needs.RETAIN, retain, "retain"), (Needs.TRAIN, train, "train")):
            if flag in needs and value is None:
                raise MethodContractError(f"method {method!r} declares it needs the {name} set but none was given")

    def _grant(self, flag: Needs, value: SampleSet | None, name: str) -> SampleSet:
        if flag not in self._needs or value is None:
            raise MethodContractError(
                f"method {self._method!r} touched the {name} set, which its contract "
                f"({self._needs.describe()}) does not grant"
            )
        return value

    @property
    def forget(self) -> SampleSet:
        return self._grant(Needs.FORGET, self._forget, "forget")

    @property
    def retain(self) -> SampleSet:
        return self._grant(Needs.RETAIN, self._retain, "retain")

    @property
    def train(self) -> SampleSet:
        return self._grant(Needs.TRAIN, self._train, "train")


UnlearnFn = Callable[[nn.Module, UnlearnData, Any, RunContext], nn.Module]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function and what the pipeline needs to know without running it."""

    name: str
    fn: UnlearnFn
    needs: Needs
    config: type[MethodConfig]
    paper: str
    kind: Literal["paper", "baseline", "reference"]
    summary: str
    selects_checkpoint_on: str | None = None
    search_space: dict[str, list[Any]] = field(default_factory=dict)
    search_basis: str = ""
    cost_fn: Callable[[Any, Any], float] | None = None

    def cost(self, cfg: MethodConfig, sizes: Any) -> float:
        """Predicted work in sample passes (``forgetflow.methods.cost``) of running with ``cfg`` on ``sizes``."""
        if self.cost_fn is None:
            raise ConfigError(f"method {self.name!r} declares no cost function")
        return float(self.cost_fn(cfg, sizes))

    def unlearn(self, model: nn.Module, data: UnlearnData, cfg: MethodConfig, run: RunContext) -> nn.Module:
        """Run the method; ``cfg`` must be this method's config type."""
        if not isinstance(cfg, self.config):
            raise ConfigError(f"method {self.name!r} expects {self.config.__name__}, got {type(cfg).__name__}")
        out = self.fn(model, data, cfg, run)
        bad = [name for name, t in out.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            # a diverged model must never reach evaluation, the registry or a gate (its metrics would be NaN)
            raise MethodDivergedError(f"method {self.name!r} diverged: non-finite weights in {', '.join(bad[:3])}"
                                      f"{' …' if len(bad) > 3 else ''}; lower its learning rate or budget")
        return out

    def scenarios(self) -> list[str]:
        """Presets shipped for this method: ``<scenario>`` (``forgetflow/presets/<method>/<scenario>.yaml``, tuned
        on the default benchmark setting) and ``<setting>/<scenario>`` (``.../<method>/<setting>/<scenario>.yaml``,
        tuned on another benchmark setting, e.g. ``memorising/random``)."""
        folder = resources.files("forgetflow") / "presets" / self.name
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            if p.name.endswith(".yaml"):
                found.append(p.name[: -len(".yaml")])
            elif p.is_dir():
                found += [f"{p.name}/{q.name[: -len('.yaml')]}" for q in p.iterdir() if q.name.endswith(".yaml")]
        return sorted(found)

    def preset_key(self, scenario: str | None, setting: str = "default") -> str | None:
        """The preset a run of ``scenario`` on benchmark ``setting`` reads: the setting's own where shipped,
        else the default setting's (``applied_preset`` then says so)."""
        if scenario and setting != "default" and f"{setting}/{scenario}" in self.scenarios():
            return f"{setting}/{scenario}"
        return scenario

    def preset(self, scenario: str) -> dict[str, Any]:
        """The preset file's content (``config`` values and the ``search`` that produced them)."""
        path = resources.files("forgetflow") / "presets" / self.name
        for part in f"{scenario}.yaml".split("/"):
            path = path / part
        if not path.is_file():
            raise ConfigError(f"method {self.name!r} has no preset for scenario {scenario!r} (has: {', '.join(self.scenarios()) or 'none'})")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict) or "config" not in data:
            raise ConfigError(f"preset {self.name}/{scenario}.yaml: needs a 'config' mapping")
        return data

    def applied_preset(self, scenario: str | None, setting: str = "default") -> dict[str, Any]:
        """What ``resolve(scenario, setting=setting)`` takes its tuned values from, in words, and a warning
        where it has none.

        ``{"scenario": ..., "file": "forgetflow/presets/<method>/[<setting>/]<scenario>.yaml" or None, "applied":
        <the file, or "none: method defaults">, "warning": None or why the defaults (or another setting's preset)
        ran}``; batch phase records and benchmark rows carry it, so a method run outside the scenarios it was
        tuned for says so.
        """
        key = self.preset_key(scenario, setting)
        if key and key in self.scenarios():
            path = f"forgetflow/presets/{self.name}/{key}.yaml"
            why = None
            if setting != "default" and key == scenario:
                why = (f"{self.name} has no preset tuned on setting {setting!r} for scenario {scenario!r}; "
                       "the default setting's preset ran")
            return {"scenario": scenario, "file": path, "applied": path, "warning": why}
        has = ", ".join(self.scenarios()) or "none"
        if scenario:
            why = (f"{self.name} has no preset for scenario {scenario!r} (has: {has}); it ran with its method "
                   "defaults, which were not tuned for this kind of request")
        else:
            why = None  # presets switched off on purpose (unlearn.preset: null): nothing to warn about
        return {"scenario": scenario, "file": None, "applied": "none: method defaults", "warning": why}

    def resolve(self, scenario: str | None = None, overrides: Mapping[str, Any] | None = None,
                setting: str = "default") -> MethodConfig:
        """Config = the method's defaults ← the scenario preset (the setting's own where shipped) ← ``overrides``.

        A scenario without a shipped preset falls back to the defaults; ``applied_preset`` says so.
        """
        values: dict[str, Any] = {}
        key = self.preset_key(scenario, setting)
        if key and key in self.scenarios():
            values.update(self.preset(key)["config"] or {})
        values.update(overrides or {})
        try:
            return self.config.model_validate(values)
        except Exception as exc:  # pydantic.ValidationError → one readable line
            errors = getattr(exc, "errors", None)
            if callable(errors):
                first = errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                raise ConfigError(f"unlearn.methods.{self.name}.{loc}: {first['msg']}") from exc
            raise

    def describe(self) -> dict[str, Any]:
        """What ``forgetflow methods --json`` prints for this method."""
        return {
            "name": self.name,
            "kind": self.kind,
            "needs": self.needs.describe(),
            "paper": self.paper,
            "summary": self.summary,
            "scenarios": self.scenarios(),
            "selects_checkpoint_on": self.selects_checkpoint_on,
            "search_space": self.search_space,
            "search_basis": self.search_basis,
            "presets": {sc: f"forgetflow/presets/{self.name}/{sc}.yaml" for sc in self.scenarios()},
            "config": self.config.model_json_schema().get("properties", {}),
        }


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(
    name: str,
    *,
    needs: Needs,
    config: type[MethodConfig],
    paper: str,
    kind: Literal["paper", "baseline", "reference"] = "baseline",
    selects_checkpoint_on: str | None = None,
    search_space: dict[str, list[Any]] | None = None,
    search_basis: str = "",
    cost: Callable[[Any, Any], float] | None = None,
) -> Callable[[UnlearnFn], UnlearnFn]:
    """Decorator: register an unlearning function with its contract, declared search space and cost model.

    ``search_basis`` says what the space was declared from (a paper's values, the ranges in docs/methods), written before
    any search or benchmark result was read; ``cost`` is the method's pure ``(cfg, sizes) -> sample passes``
    (``forgetflow.methods.cost``). The summary shown by ``forgetflow methods`` is the first line of the
    function's docstring.
    """

    def deco(fn: UnlearnFn) -> UnlearnFn:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        METHODS.add(name, MethodSpec(name, fn, needs, config, paper, kind, summary, selects_checkpoint_on,
                                     dict(search_space or {}), search_basis, cost))
        return fn

    return deco


def data_for(spec: MethodSpec, forget: SampleSet, retain: SampleSet, num_classes: int, recipe: Recipe) -> UnlearnData:
    """The ``UnlearnData`` a method's contract grants, built from a batch's forget and retain sets."""
    return UnlearnData(
        needs=spec.needs,
        forget=forget,
        retain=retain if Needs.RETAIN in spec.needs else None,
        train=SampleSet.concat(forget, retain) if Needs.TRAIN in spec.needs else None,
        num_classes=num_classes,
        recipe=recipe,
        method=spec.name,
    )
