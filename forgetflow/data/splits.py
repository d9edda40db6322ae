"""Forget / retain / validation / test sets of one batch, built from a dataset version and a manifest."""

from __future__ import annotations

from dataclasses import dataclass

from forgetflow.data.samples import SampleSet
from forgetflow.data.version import DatasetVersion
from forgetflow.errors import DataError


@dataclass(frozen=True)
class Splits:
    """The sets an unlearning batch works with. ``unseen`` exists only for sources that have one (MUFAC)."""

    forget: SampleSet
    retain: SampleSet
    val: SampleSet
    test: SampleSet
    unseen: SampleSet | None
    num_classes: int

    @property
    def train(self) -> SampleSet:
        """The whole training split (forget first, then retain), for methods that declare they need it."""
        return SampleSet.concat(self.forget, self.retain)


def build_splits(version: DatasetVersion, forget_ids: list[str]) -> Splits:
    """Split the training samples into forget (``forget_ids``, sorted) and retain (the rest)."""
    if not forget_ids:
        raise DataError("the forget set is empty: every request of the batch was quarantined or resolved to nothing")
    train = version.rows("train")
    is_forget = train["sample_id"].isin(forget_ids)
    if int(is_forget.sum()) != len(set(forget_ids)):
        missing = sorted(set(forget_ids) - set(train.loc[is_forget, "sample_id"]))
        raise DataError(f"{version.label}: forget ids not in the training split: {', '.join(missing[:5])}")
    forget_rows = train[is_forget].sort_values("sample_id")
    retain_rows = train[~is_forget]
    unseen_rows = version.rows("unseen")
    return Splits(
        forget=version.sample_set(forget_rows),
        retain=version.sample_set(retain_rows),
        val=version.sample_set(split="val"),
        test=version.sample_set(split="test"),
        unseen=version.sample_set(unseen_rows) if len(unseen_rows) else None,
        num_classes=version.num_classes,
    )
