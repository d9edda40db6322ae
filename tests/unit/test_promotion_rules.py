"""The rules of moving ``champion`` as pure functions: every path refuses for the same reasons, in one line."""

import pytest

from forgetflow import promotion_rules as rules
from forgetflow.errors import PromotionRefused

MOVES = [  # the alias history: original 1, batch model 2 promoted, audit retrain 3 promoted
    {"alias": "champion", "from_version": None, "to_version": "1"},
    {"alias": "challenger", "from_version": None, "to_version": "2"},
    {"alias": "champion", "from_version": "1", "to_version": "2"},
    {"alias": "champion", "from_version": "2", "to_version": "3"},
]


def test_a_move_needs_a_reason_and_a_version():
    for reason in ("", "  ", None):
        with pytest.raises(PromotionRefused, match="reason is required"):
            rules.require_reason(reason)
    rules.require_reason("incident 42")
    assert rules.target(None, "4") == "4" and rules.target("2", "4") == "2"
    with pytest.raises(PromotionRefused, match="no challenger"):
        rules.target(None, None)
    with pytest.raises(PromotionRefused, match=r"model version 9 is not in registry 'm' \(versions: 1, 2\)"):
        rules.require_known("9", ["1", "2"], "m")


def test_promotable_refuses_the_champion_and_a_model_holding_erased_data():
    rules.check_promotable("2", champion="1", held=[], clean=["2"])
    with pytest.raises(PromotionRefused, match="already champion"):
        rules.check_promotable("1", champion="1", held=[], clean=[])
    with pytest.raises(PromotionRefused) as err:
        rules.check_promotable("1", champion="3", held=["b1", "b2"], clean=["3"])
    assert str(err.value) == ("version 1 still holds data erased by batch b1 and 1 later batch(es): promotion "
                              "refused (versions free of erased data: 3)")
    with pytest.raises(PromotionRefused, match="none; `forgetflow audit` retrains one"):
        rules.check_promotable("1", champion="3", held=["b1"], clean=[])


def test_failing_gates_need_an_override_which_the_note_records():
    passed = {"passed": True, "exact": False, "failed": [], "summary": "utility ok", "gates": {"utility": {}}}
    failing = {"passed": False, "exact": False, "failed": ["utility"], "summary": "utility FAIL",
               "gates": {"utility": {}}}
    exact = {"passed": False, "exact": True, "failed": [], "summary": "-", "gates": {}}
    assert rules.gates_overridden("2", passed, override=False) is False
    assert rules.gates_overridden("3", exact, override=False) is False
    with pytest.raises(PromotionRefused, match=r"fails the gate\(s\) utility \(utility FAIL\); pass --override"):
        rules.gates_overridden("2", failing, override=False)
    assert rules.gates_overridden("2", failing, override=True) is True
    assert rules.promotion_note("DPO accepts", failing, True) == "override of failed gates utility: DPO accepts"
    assert rules.promotion_note("looks fine", passed, False) == "looks fine (utility ok)"
    assert rules.promotion_note("retrained", exact, False) == "retrained"


def test_rollback_goes_to_a_former_champion_only():
    former = rules.former_champions(MOVES, current="3")
    assert former == ["2", "1"]  # most recent first, each once, the challenger move ignored
    assert rules.rollback_target(None, "3", former, ["1", "2", "3", "4"], "m") == "2"
    assert rules.rollback_target("1", "3", former, ["1", "2", "3", "4"], "m") == "1"
    with pytest.raises(PromotionRefused, match="was never champion: use `forgetflow promote 4`"):
        rules.rollback_target("4", "3", former, ["1", "2", "3", "4"], "m")
    with pytest.raises(PromotionRefused, match="already champion"):
        rules.rollback_target("3", "3", former, ["1", "2", "3"], "m")
    with pytest.raises(PromotionRefused, match="only champion there has been"):
        rules.rollback_target(None, "1", [], ["1"], "m")
    with pytest.raises(PromotionRefused, match="former champions free of erased data: 2"):
        rules.refuse_if_holding("1", ["b1"], "rollback", ["2"], "former champions")
