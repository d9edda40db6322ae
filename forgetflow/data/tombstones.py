"""Keyed tombstones: an erased image is named by a keyed hash of its content, never by its bare hash.

A tombstone (``erased.parquet``) and a forget manifest must name what was erased, so that a purge can find
the image's pixels in storage and validation can say "already erased". A bare SHA-256 of the pixels would
also let anyone who holds a candidate image confirm that it was in the data (hash the image, look it up).
Tombstones therefore keep ``content_hmac`` = HMAC-SHA256(key, content_hash), where ``content_hash`` is
:func:`forgetflow.data.version.content_hash` of the pixels. Without the key the column is useless to a
holder of images; with it, a purge keys the hash of every image it opens and compares.

Keying the existing digest (rather than the image) is what makes migration possible: tombstones written
before keys existed (a ``content_hash`` column) are converted without the erased images, which are gone.

Where the key comes from (docs/erasure.md, "Keyed tombstones"):

1. ``FORGETFLOW_TOMBSTONE_KEY`` in the environment (at least 32 characters; e.g. from a secret store).
2. Otherwise ``<state>/tombstone.key``: created on first use with 32 random bytes (hex), permissions 0600,
   and a warning, so that the demo works on a fresh clone. Back it up with the ledger: the same data needs
   the same key.

Every version records the id of the key its tombstones were made with (``tombstone_key_id`` in
``version.json``, a keyed hash of a constant, which reveals nothing about the key). A key that does not
match is refused with a one-line error instead of silently matching nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from forgetflow.errors import DataError

log = logging.getLogger(__name__)

KEY_ENV = "FORGETFLOW_TOMBSTONE_KEY"
KEY_FILE = "tombstone.key"
SCHEME = "hmac-sha256"
MIN_KEY_CHARS = 32
_ID_MESSAGE = b"forgetflow tombstone key id"


@dataclass(frozen=True)
class TombstoneKey:
    """The secret that keys content hashes, and where it came from (never printed)."""

    secret: bytes = field(repr=False)
    source: str  # "environment" or the key file's path

    @property
    def key_id(self) -> str:
        """A public name of the key (16 hex digits): equal ids mean the same key."""
        return hmac.new(self.secret, _ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def digest(self, content_hash: str) -> str:
        """HMAC-SHA256 of one content hash (64 hex digits)."""
        return hmac.new(self.secret, str(content_hash).encode(), hashlib.sha256).hexdigest()

    def digests(self, content_hashes: Iterable[str]) -> list[str]:
        """:meth:`digest` of each hash, in order."""
        return [self.digest(h) for h in content_hashes]


def key_from_environment() -> TombstoneKey | None:
    """The key in ``FORGETFLOW_TOMBSTONE_KEY``, or None when it is unset.

    Raises:
        DataError: the variable is set but shorter than 32 characters.
    """
    value = os.environ.get(KEY_ENV)
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise DataError(f"{KEY_ENV} has {len(value)} characters; a tombstone key needs at least {MIN_KEY_CHARS} "
                        "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
    return TombstoneKey(value.encode(), "environment")


def load_key(state_dir: Path, create: bool = True) -> TombstoneKey:
    """The project's tombstone key: the environment's, else ``<state_dir>/tombstone.key`` (created if missing).

    Args:
        state_dir: the project's state folder.
        create: generate the key file when there is neither a variable nor a file.

    Raises:
        DataError: the variable is too short, or there is no key and ``create`` is false.
    """
    env = key_from_environment()
    if env is not None:
        return env
    path = Path(state_dir) / KEY_FILE
    if not path.exists():
        if not create:
            raise DataError(f"no tombstone key: set {KEY_ENV} or restore {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            log.warning("%s is not set: generated a tombstone key in %s (mode 0600). Keep it with the ledger; "
                        "erased data can only be matched with the key its tombstones were made with.", KEY_ENV, path)
    mode = path.stat().st_mode & 0o077
    if mode:
        log.warning("tombstone key %s is readable by group or others (mode %o); chmod 600 it", path,
                    path.stat().st_mode & 0o777)
    value = path.read_text().strip()
    if len(value) < MIN_KEY_CHARS:
        raise DataError(f"{path}: the tombstone key has {len(value)} characters; at least {MIN_KEY_CHARS} are needed")
    return TombstoneKey(value.encode(), str(path))


def require_key(key: TombstoneKey | None) -> TombstoneKey:
    """``key``, else the environment's key; a one-line error when there is neither."""
    if key is not None:
        return key
    env = key_from_environment()
    if env is None:
        raise DataError(f"tombstones need a key: pass the project's key or set {KEY_ENV}")
    return env


def check_key(meta: dict, key: TombstoneKey, where: str) -> None:
    """Refuse a key other than the one a version's tombstones were made with.

    Raises:
        DataError: ``meta`` names another key id.
    """
    made_with = meta.get("tombstone_key_id")
    if made_with and made_with != key.key_id:
        raise DataError(f"{where}: its tombstones were keyed with key id {made_with}, but the key in use "
                        f"({'environment' if key.source == 'environment' else key.source}) has id {key.key_id}; "
                        f"set {KEY_ENV} to the original key")
