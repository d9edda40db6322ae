import pytest

from forgetflow.errors import DuplicateNameError, UnknownNameError
from forgetflow.registry import Registry


def test_add_get_names():
    reg: Registry[int] = Registry("thing")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.get("a") == 1 and reg.names() == ["a", "b"] and len(reg) == 2 and "a" in reg


def test_duplicates_are_refused():
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(DuplicateNameError, match="thing 'a' is registered twice"):
        reg.add("a", 2)


def test_unknown_name_suggests_close_ones():
    reg: Registry[int] = Registry("method")
    reg.add("mu-mis", 1)
    with pytest.raises(UnknownNameError, match="Did you mean mu-mis"):
        reg.get("mumis")
