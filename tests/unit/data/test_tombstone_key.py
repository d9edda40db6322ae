"""Where the tombstone key comes from (forgetflow/data/tombstones.py): the environment, else a generated file."""

import logging
import stat

import pytest

from forgetflow.data import tombstones
from forgetflow.errors import DataError


def test_a_fresh_clone_gets_a_private_generated_key_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(tombstones.KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="forgetflow.data.tombstones"):
        key = tombstones.load_key(tmp_path / "state")
    path = tmp_path / "state" / tombstones.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "FORGETFLOW_TOMBSTONE_KEY is not set" in caplog.text
    again = tombstones.load_key(tmp_path / "state")
    assert again.key_id == key.key_id and again.digest("ab" * 16) == key.digest("ab" * 16)
    assert key.secret.decode() not in repr(key)
    with pytest.raises(DataError, match="no tombstone key"):
        tombstones.load_key(tmp_path / "other", create=False)


def test_the_environment_wins_and_must_be_long_enough(tmp_path, monkeypatch):
    monkeypatch.setenv(tombstones.KEY_ENV, "x" * 40)
    key = tombstones.load_key(tmp_path)
    assert key.source == "environment" and not (tmp_path / tombstones.KEY_FILE).exists()
    assert len(key.digest("ab" * 16)) == 64 and key.digest("ab" * 16) != tombstones.TombstoneKey(b"y" * 40, "t").digest("ab" * 16)
    monkeypatch.setenv(tombstones.KEY_ENV, "short")
    with pytest.raises(DataError, match="has 5 characters; a tombstone key needs at least 32"):
        tombstones.load_key(tmp_path)
