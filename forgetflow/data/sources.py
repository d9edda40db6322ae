"""Raw data sources a dataset version is built from, found by name in ``DATASETS``.

* ``fashion-mnist`` reads the four idx files of Debian's ``dataset-fashion-mnist`` package (gzipped or
  not); only where those files are absent does it fall back to torchvision's downloader, which needs a
  network.
* ``digits`` is scikit-learn's 8x8 digits (1,797 images, bundled with scikit-learn): the fast test set.
* ``image-folder`` reads a folder of images plus CSV files in the MUFAC layout (``image_path``,
  ``age_class`` with letters a-h), the path for users' own data.
"""

from __future__ import annotations

import gzip
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from forgetflow.errors import DataError
from forgetflow.paths import confined
from forgetflow.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class RawDataset:
    """Pixels and labels as read from the source, before ids, subjects and splits are assigned.

    ``split`` is the source's own split per sample (``train``, ``test`` or ``unseen``); ``names`` are
    source-derived sample names (file stems) or empty; ``subjects`` are source-given subject ids or empty.
    """

    name: str
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    split: np.ndarray  # str [N]
    classes: list[str]
    names: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    subjects: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))


SourceFn = Callable[["SourceSettings"], RawDataset]
DATASETS: Registry[SourceFn] = Registry("dataset")


@dataclass(frozen=True)
class SourceSettings:
    """What a source needs from params.yaml ``data`` (paths already resolved)."""

    raw: Path | None
    seed: int
    test_fraction: float = 0.2
    image_size: int = 64
    train_csv: str = "custom_train_dataset.csv"
    test_csv: str | None = "custom_val_dataset.csv"
    unseen_csv: str | None = "custom_test_dataset.csv"
    path_column: str = "image_path"
    label_column: str = "age_class"
    subject_pattern: str | None = r"^(F\d{4})"
    grayscale: bool = False


def register_dataset(name: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: register a raw source under ``name``."""

    def deco(fn: SourceFn) -> SourceFn:
        DATASETS.add(name, fn)
        return fn

    return deco


FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped or plain): magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        data = fh.read()
    if len(data) < 8:
        raise DataError(f"{path}: too short to be an idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {arr.size} bytes")
    return arr.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem, root / "FashionMNIST" / "raw" / stem):
        if candidate.exists():
            return candidate
    return None


def _fashion_from_torchvision(target: Path) -> Path:
    """Last resort where the Debian package is absent: torchvision's downloader (needs a network)."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as exc:  # pragma: no cover - torchvision is in requirements
        raise DataError("Fashion-MNIST files not found and torchvision is not installed") from exc
    target.mkdir(parents=True, exist_ok=True)
    try:
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - any network failure becomes one readable line
        raise DataError(
            f"Fashion-MNIST not found under {DEBIAN_FASHION_DIR} and the download failed ({exc}); "
            "install it with: apt-get install -y dataset-fashion-mnist"
        ) from exc
    return target / "FashionMNIST" / "raw"


@register_dataset("fashion-mnist")
def fashion_mnist(settings: SourceSettings) -> RawDataset:
    """Fashion-MNIST: 60,000 train + 10,000 test 28x28 grey images, 10 classes."""
    root = settings.raw or DEBIAN_FASHION_DIR
    paths = {key: _find_idx(root, stem) for key, stem in FASHION_FILES.items()}
    if any(p is None for p in paths.values()):
        log.warning("Fashion-MNIST idx files not under %s; trying torchvision's downloader", root)
        cache = Path(tempfile.gettempdir()) / "forgetflow-fashion-mnist"
        raw_dir = _fashion_from_torchvision(cache)
        paths = {key: _find_idx(raw_dir, stem) for key, stem in FASHION_FILES.items()}
        if any(p is None for p in paths.values()):
            raise DataError(f"Fashion-MNIST download into {cache} is incomplete")
    train_x = _read_idx(paths["train_images"])  # type: ignore[arg-type]
    train_y = _read_idx(paths["train_labels"])  # type: ignore[arg-type]
    test_x = _read_idx(paths["test_images"])  # type: ignore[arg-type]
    test_y = _read_idx(paths["test_labels"])  # type: ignore[arg-type]
    images = np.concatenate([train_x, test_x])[:, None, :, :]
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    split = np.array(["train"] * len(train_y) + ["test"] * len(test_y), dtype=object)
    names = np.array(
        [f"fmnist-tr-{i:05d}" for i in range(len(train_y))] + [f"fmnist-te-{i:05d}" for i in range(len(test_y))],
        dtype=object,
    )
    return RawDataset("fashion-mnist", np.ascontiguousarray(images), labels, split, FASHION_CLASSES, names=names)


@register_dataset("digits")
def digits(settings: SourceSettings) -> RawDataset:
    """scikit-learn's digits: 1,797 8x8 images (0-16 scaled to 0-255), a seeded test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(settings.seed)
    n = len(labels)
    test_mask = np.zeros(n, dtype=bool)
    test_mask[rng.permutation(n)[: int(round(settings.test_fraction * n))]] = True
    split = np.where(test_mask, "test", "train").astype(object)
    names = np.array([f"digits-{i:04d}" for i in range(n)], dtype=object)
    return RawDataset("digits", images, labels, split, [str(d) for d in range(10)], names=names)


AGE_LETTERS = "abcdefgh"


def _age_label(value: object, where: str) -> int:
    text = str(value).strip().lower()
    if text in AGE_LETTERS and len(text) == 1:
        return AGE_LETTERS.index(text)
    if text.isdigit():
        return int(text)
    raise DataError(f"{where}: label {value!r} is neither a letter a-h nor an integer")


@register_dataset("image-folder")
def image_folder(settings: SourceSettings) -> RawDataset:
    """A folder of images with CSV files (MUFAC layout: ``image_path``, ``age_class``).

    ``train_csv`` lists training images; the optional ``test_csv`` (MUFAC's val CSV, used for utility) and
    ``unseen_csv`` (MUFAC's test CSV, identities never trained on, used for the forget-vs-unseen MIA).
    Each ``image_path`` is looked up relative to the folder, then under ``<split>_images/``, then relative to
    the CSV's folder; an absolute ``image_path`` or one with a ``..`` part is refused (it names a file
    outside the image folder). Images
    are resized to ``image_size`` squared; the subject of a row is the first group of ``subject_pattern``
    matched against the file name (MUFAC households ``F0001``...), else none (synthetic subjects apply).
    """
    import pandas as pd
    from PIL import Image

    if settings.raw is None:
        raise DataError("data.raw must name the image folder for dataset image-folder")
    root = settings.raw
    pattern = re.compile(settings.subject_pattern) if settings.subject_pattern else None
    parts = [("train", settings.train_csv, "train_images"),
             ("test", settings.test_csv, "val_images"),
             ("unseen", settings.unseen_csv, "test_images")]
    images, labels, splits, names, subjects = [], [], [], [], []
    for split, csv_name, image_dir in parts:
        if csv_name is None:
            continue
        csv_path = root / csv_name
        if not csv_path.exists():
            if split == "train":
                raise DataError(f"{csv_path}: training CSV not found")
            continue
        table = pd.read_csv(csv_path)
        for column in (settings.path_column, settings.label_column):
            if column not in table.columns:
                raise DataError(f"{csv_path}: column {column!r} missing (found {', '.join(table.columns)})")
        for line, row in enumerate(table.itertuples(index=False), start=2):
            rel = str(getattr(row, settings.path_column))
            where = f"{csv_path}:{line}"
            # a CSV cell names a file: never one outside the image folder (absolute, or climbing out with '..')
            confined(root, rel, f"{where}: {settings.path_column} {rel!r}", DataError)
            candidates = [root / rel, root / image_dir / rel, csv_path.parent / rel]
            path = next((c for c in candidates if c.exists()), None)
            if path is None:
                raise DataError(f"{where}: image {rel!r} not found under {root}")
            with Image.open(path) as img:
                img = img.convert("L" if settings.grayscale else "RGB")
                img = img.resize((settings.image_size, settings.image_size), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
            arr = arr[None, :, :] if arr.ndim == 2 else arr.transpose(2, 0, 1)
            images.append(arr)
            labels.append(_age_label(getattr(row, settings.label_column), where))
            splits.append(split)
            names.append(Path(rel).stem)
            match = pattern.search(Path(rel).name) if pattern else None
            subjects.append(match.group(1) if match else "")
    if not images:
        raise DataError(f"{root}: no images listed")
    num_classes = max(max(labels) + 1, len(AGE_LETTERS) if settings.label_column == "age_class" else 0)
    classes = [AGE_LETTERS[i] if settings.label_column == "age_class" and i < 8 else str(i) for i in range(num_classes)]
    return RawDataset(
        "image-folder",
        np.ascontiguousarray(np.stack(images)),
        np.asarray(labels, dtype=np.int64),
        np.asarray(splits, dtype=object),
        classes,
        names=np.asarray(names, dtype=object),
        subjects=np.asarray(subjects, dtype=object),
    )

