"""The rules of moving ``champion``: which version may be promoted or rolled back to, and what is recorded.

Pure functions over what the registry and the ledger say (version numbers, alias moves, the erasures a
version still holds per :mod:`forgetflow.lineage`); ``tasks/promotion.py`` reads those and applies these
rules, so that every path (the batch, the promotion flow, ``forgetflow promote``, ``forgetflow rollback``)
refuses for the same reasons with the same words:

* a move needs a reason (it is recorded in the alias history);
* the version must exist and not already be champion;
* a version that still holds erased data never becomes champion, by promotion or by rollback;
* a version whose gates fail is promoted only with an override, which the recorded reason states;
* a rollback goes to a former champion only (anything else is a promotion and must pass its gates).
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

from forgetflow.errors import PromotionRefused


def require_reason(reason: str | None) -> None:
    """Every alias move records why."""
    if not reason or not reason.strip():
        raise PromotionRefused("a reason is required (--reason \"...\"); it is recorded in the alias history")


def target(version: str | None, challenger: str | None) -> str:
    """The version to promote: the one named, else the challenger."""
    if version is None:
        if challenger is None:
            raise PromotionRefused("no challenger to promote; name a version")
        return challenger
    return str(version)


def require_known(version: str, known: Collection[str], model_name: str) -> None:
    if version not in known:
        raise PromotionRefused(f"model version {version} is not in registry {model_name!r} "
                               f"(versions: {', '.join(known) or 'none'})")


def refuse_if_champion(version: str, champion: str | None) -> None:
    if version == champion:
        raise PromotionRefused(f"version {version} is already champion")


def refuse_if_holding(version: str, held: Sequence[str], doing: str, alternatives: Sequence[str],
                      alternatives_are: str = "versions") -> None:
    """A version that holds data erased by some batch is refused; the message offers the clean alternatives."""
    if held:
        more = f" and {len(held) - 1} later batch(es)" if len(held) > 1 else ""
        raise PromotionRefused(
            f"version {version} still holds data erased by batch {held[0]}{more}: {doing} refused "
            f"({alternatives_are} free of erased data: {', '.join(alternatives) or 'none; `forgetflow audit` retrains one'})")


def check_promotable(version: str, champion: str | None, held: Sequence[str], clean: Sequence[str]) -> None:
    """The one "may this known version be promoted at all" rule (gates are judged apart: they may be
    overridden)."""
    refuse_if_champion(version, champion)
    refuse_if_holding(version, held, "promotion", clean)


def gates_overridden(version: str, checked: Mapping[str, Any], override: bool) -> bool:
    """Whether this promotion overrides failed gates; refused when they fail and nobody overrides them.

    ``checked`` is a re-check of the version's gates: ``passed``, ``exact``, ``failed``, ``summary``.
    An exact model (original or retrain) needs no gate.
    """
    if checked["passed"] or checked["exact"]:
        return False
    if not override:
        raise PromotionRefused(f"version {version} fails the gate(s) {', '.join(checked['failed'])} "
                               f"({checked['summary']}); pass --override with --reason to promote it anyway")
    return True


def promotion_note(reason: str, checked: Mapping[str, Any], overridden: bool) -> str:
    """What the alias history records for a promotion."""
    if overridden:
        return f"override of failed gates {', '.join(checked['failed'])}: {reason}"
    return reason + (f" ({checked['summary']})" if checked["gates"] else "")


def former_champions(moves: Sequence[Mapping[str, Any]], current: str | None) -> list[str]:
    """Versions that were champion before ``current``, most recent first (each once), from the alias history."""
    out: list[str] = []
    for move in reversed(moves):
        if move["alias"] != "champion":
            continue
        for v in (move["from_version"], move["to_version"]):
            if v and v != current and v not in out:
                out.append(v)
    return out


def rollback_target(to: str | None, current: str, former: Sequence[str], known: Collection[str],
                    model_name: str) -> str:
    """The version a rollback goes to: the one named (a former champion), else the previous champion."""
    if to is None:
        if not former:
            raise PromotionRefused(f"version {current} is the only champion there has been: nothing to roll back to")
        return former[0]
    version = str(to)
    require_known(version, known, model_name)
    refuse_if_champion(version, current)
    if version not in former:
        raise PromotionRefused(f"version {version} was never champion: use `forgetflow promote {version}` "
                               "(which checks its gates) instead of a rollback")
    return version
