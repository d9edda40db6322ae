"""Raw sources: the idx reader, Fashion-MNIST from Debian's package, and the MUFAC-layout image folder."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forgetflow.config import DataParams, ImageFolderParams
from forgetflow.data import prepare_version
from forgetflow.data.sources import DEBIAN_FASHION_DIR, SourceSettings, _read_idx, fashion_mnist
from forgetflow.errors import DataError


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_idx_reader_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _idx(tmp_path / "x.gz", arr)
    assert np.array_equal(_read_idx(tmp_path / "x.gz"), arr)


def test_fashion_mnist_layout_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for stem, shape in (("train-images-idx3-ubyte", (12, 28, 28)), ("train-labels-idx1-ubyte", (12,)),
                        ("t10k-images-idx3-ubyte", (4, 28, 28)), ("t10k-labels-idx1-ubyte", (4,))):
        data = rng.integers(0, 10 if "labels" in stem else 256, shape)
        _idx(tmp_path / f"{stem}.gz", data)
    raw = fashion_mnist(SourceSettings(raw=tmp_path, seed=0))
    assert raw.images.shape == (16, 1, 28, 28) and list(raw.split).count("test") == 4


@pytest.mark.skipif(not (DEBIAN_FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist():
    raw = fashion_mnist(SourceSettings(raw=None, seed=0))
    assert raw.images.shape == (70000, 1, 28, 28)
    assert int(raw.labels[0]) == 9  # as upstream: the first training image is an ankle boot
    assert np.bincount(raw.labels[:60000]).tolist() == [6000] * 10


def _mufac_folder(root: Path) -> None:
    rng = np.random.default_rng(1)
    for split_dir, csv_name, households in (("train_images", "custom_train_dataset.csv", ["F0001", "F0002", "F0003"]),
                                            ("val_images", "custom_val_dataset.csv", ["F0801"]),
                                            ("test_images", "custom_test_dataset.csv", ["F0851"])):
        (root / split_dir).mkdir(parents=True)
        lines = ["image_path,age_class"]
        for h in households:
            for i, letter in enumerate("abc"):
                name = f"{h}_AGE_D_18_{letter}{i}.jpg"
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / split_dir / name)
                lines.append(f"{name},{letter}")
        (root / csv_name).write_text("\n".join(lines) + "\n")


def test_image_folder_mufac_layout(tmp_path):
    _mufac_folder(tmp_path / "mufac")
    params = DataParams(dataset="image-folder", raw=str(tmp_path / "mufac"), val_fraction=0.34,
                        image_folder=ImageFolderParams(image_size=16))
    version = prepare_version(params, tmp_path, seed=0)
    assert version.shape == (3, 16, 16) and version.num_classes == 8
    assert version.meta["counts"]["unseen"] == 3 and version.meta["counts"]["test"] == 3
    train = version.rows("train")
    assert set(train["subject_id"]) <= {"F0001", "F0002", "F0003"}  # households are the data subjects
    val_subjects = set(version.rows("val")["sample_id"].str[:5])
    assert not val_subjects & set(train["subject_id"])  # no person on both sides of the validation split
    assert sorted(train["label"].unique()) == [0, 1, 2]


def test_image_folder_bad_label_names_the_line(tmp_path):
    _mufac_folder(tmp_path / "m")
    csv = tmp_path / "m" / "custom_train_dataset.csv"
    csv.write_text(csv.read_text().replace(",b\n", ",z\n", 1))
    with pytest.raises(DataError, match=r"custom_train_dataset.csv:\d+: label 'z'"):
        prepare_version(DataParams(dataset="image-folder", raw=str(tmp_path / "m")), tmp_path, seed=0)


@pytest.mark.parametrize("cell", ["../outside.jpg", "train_images/../../outside.jpg", "ABSOLUTE"])
def test_image_folder_paths_stay_inside_the_folder(tmp_path, cell):
    """An image_path that is absolute or climbs out with '..' names a file outside the image folder: refused,
    with the line, even when that file exists and is a valid image."""
    _mufac_folder(tmp_path / "m")
    outside = tmp_path / "outside.jpg"
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(outside)
    cell = str(outside) if cell == "ABSOLUTE" else cell
    csv = tmp_path / "m" / "custom_train_dataset.csv"
    lines = csv.read_text().splitlines()
    lines[2] = f"{cell},a"
    csv.write_text("\n".join(lines) + "\n")
    params = DataParams(dataset="image-folder", raw=str(tmp_path / "m"), image_folder=ImageFolderParams(image_size=16))
    with pytest.raises(DataError, match=r"custom_train_dataset.csv:3: image_path .*(relative to|leaves)"):
        prepare_version(params, tmp_path / "out", seed=0)
