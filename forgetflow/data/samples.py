"""In-memory sample sets and the batch iterator every loop in forgetflow uses.

A ``SampleSet`` holds uint8 images, integer labels, the string sample ids and a stable integer ``uid``
per sample (assigned once when a dataset is prepared, never reused), which REM uses to seed per-sample
masks. Batching indexes tensors directly: on a CPU this is several times faster than a DataLoader with
per-sample collation, and it draws its order only from the generator it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class Batch:
    """One mini-batch: float images in [0, 1], labels, and the samples' stable uids."""

    x: torch.Tensor
    y: torch.Tensor
    uid: torch.Tensor


@dataclass(frozen=True)
class SampleSet:
    """Images ``[N, C, H, W]`` (uint8), labels ``[N]`` (int64), ids ``[N]`` (str) and uids ``[N]`` (int64)."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: np.ndarray
    uids: torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if not (self.labels.shape[0] == n == len(self.ids) == self.uids.shape[0]):
            raise ValueError("images, labels, ids and uids must have the same length")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Per-sample image shape (C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, positions: np.ndarray | torch.Tensor | list[int]) -> "SampleSet":
        """The samples at ``positions`` (integer positions or a boolean mask), in that order."""
        pos = torch.as_tensor(np.asarray(positions))
        if pos.dtype == torch.bool:
            pos = pos.nonzero().flatten()
        pos = pos.long()
        return SampleSet(self.images[pos], self.labels[pos], self.ids[pos.numpy()], self.uids[pos])

    def with_labels(self, labels: torch.Tensor) -> "SampleSet":
        """The same samples with other labels (corrupted-data scenarios)."""
        return SampleSet(self.images, labels.long(), self.ids, self.uids)

    def with_images(self, images: torch.Tensor) -> "SampleSet":
        """The same samples with other pixels (a backdoor trigger, an adversarial copy)."""
        return SampleSet(images, self.labels, self.ids, self.uids)

    def head(self, n: int) -> "SampleSet":
        """The first ``n`` samples."""
        return self.subset(np.arange(min(n, len(self))))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield mini-batches; a shuffled order is drawn from ``generator`` only."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        stop = n - (n % batch_size) if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield Batch(
                x=to_float(self.images[idx]).to(device, non_blocking=True),
                y=self.labels[idx].to(device, non_blocking=True),
                uid=self.uids[idx].to(device, non_blocking=True),
            )

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """All samples as (float images, labels) on ``device``."""
        return to_float(self.images).to(device), self.labels.to(device)

    @staticmethod
    def concat(*sets: "SampleSet") -> "SampleSet":
        """Concatenate sample sets in order."""
        return SampleSet(
            torch.cat([s.images for s in sets]),
            torch.cat([s.labels for s in sets]),
            np.concatenate([s.ids for s in sets]),
            torch.cat([s.uids for s in sets]),
        )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1]; float input passes through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()
