"""Names from outside joined into paths stay inside their folder."""

from pathlib import Path

import pytest

from forgetflow.errors import DataError, ForgetflowError
from forgetflow.paths import confined


@pytest.mark.parametrize("name", ["a.jpg", "sub/a.jpg", "F0001_x.png", "a..b.jpg", ".hidden"])
def test_inside(name):
    assert confined(Path("/data"), name, "x") == Path("/data") / name


@pytest.mark.parametrize("name, why", [
    ("", "relative to"), ("/etc/passwd", "relative to"), ("C:\\x.jpg", "relative to"), ("\\\\host\\share\\x", "relative to"),
    ("../x", "leaves"), ("sub/../../x", "leaves"), ("sub\\..\\..\\x", "leaves"),
])
def test_outside(name, why):
    with pytest.raises(DataError, match=why):
        confined(Path("/data"), name, "image_path", DataError)


def test_single_name():
    assert confined(Path("/r"), "b20261130-1", "batch id", single=True) == Path("/r/b20261130-1")
    with pytest.raises(ForgetflowError, match="single name"):
        confined(Path("/r"), "a/b", "batch id", single=True)
