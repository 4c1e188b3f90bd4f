"""Pseudonymous user ids: a keyed HMAC, stable across runs and workers that share the key.

A plain hash of a user id is reversible by anyone who can enumerate ids; a keyed HMAC is not,
and erasing a user only needs the key holder to recompute the pseudonym. The key is a secret:
it is never logged, never put in an exception, never written anywhere but the local key file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ratchet.redaction.errors import (
    PseudonymKeyInsecure,
    PseudonymKeyMissing,
    RedactionError,
)
from ratchet.settings import Settings


class PseudonymKeyUnavailable(RedactionError):
    """The key's configured source exists but cannot be read now (a Prefect server down, an
    error from the Secret block): stop, rather than fall back to a key file that would make
    other pseudonyms (the same user would get two, and joins and erasure would break)."""


PREFIX = "u_"
HEX_CHARS = 32  # 128 bits of the HMAC: collisions are out of reach for any user population
KEY_FILE = "pseudonym.key"
KEY_BYTES = 32
MIN_KEY_BYTES = 16


def pseudonymise(value: str, key: bytes) -> str:
    """``u_`` + 32 hex of HMAC-SHA256(key, value): same value and key, same pseudonym."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:HEX_CHARS]


def pseudonymise_array(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """:func:`pseudonymise` over a string array, nulls kept; each distinct id is hashed once."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return pa.array([], pa.string())
    uniques = pc.unique(values.drop_null())
    base = hmac.new(key, digestmod=hashlib.sha256)
    mapped = []
    for v in uniques.to_pylist():
        h = base.copy()
        h.update(v.encode("utf-8"))
        mapped.append(PREFIX + h.hexdigest()[:HEX_CHARS])
    positions = pc.index_in(values, value_set=uniques)
    return pc.take(pa.array(mapped, pa.string()), positions)


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PseudonymKeyInsecure(
            f"pseudonym key file {path} is readable by group or others (mode {mode:o}); "
            "restrict it to the owner (chmod 600)"
        )
    # A second process may have just created it: the link below makes the content appear at
    # once, but a short retry keeps this robust on filesystems without hard links.
    for _ in range(50):
        key = path.read_bytes()
        if len(key) >= MIN_KEY_BYTES:
            return key
        time.sleep(0.01)
    raise PseudonymKeyInsecure(f"pseudonym key file {path} is too short to be a key")


def _create_key_file(path: Path) -> bytes:
    """Create the key file once, owner-only (0600), atomically: content and name appear together.

    The key is written to a private temporary file opened with O_CREAT|O_EXCL, then hard-linked
    to its final name; ``link`` fails if the name exists, so two processes racing here agree on
    the first key and the loser reads it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key_file(path)
        except OSError:  # no hard links here: fall back to an exclusive create of the name
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return _read_key_file(path)
            with os.fdopen(fd2, "wb") as fh:
                fh.write(key)
        return key
    finally:
        tmp.unlink(missing_ok=True)


def resolve_pseudonym_key(settings: Settings, secret_block_value: str | None = None) -> bytes:
    """The HMAC key, from the first source that has one.

    1. ``RATCHET_PSEUDONYM_KEY`` (``settings.pseudonym_key``);
    2. ``secret_block_value``: what the caller loaded from a Prefect Secret block (this package
       does not import Prefect). A caller that cannot tell whether the block exists (its server
       does not answer) raises :class:`PseudonymKeyUnavailable` instead of calling this with
       ``None``: only a block that does not exist lets resolution go on to the key file;
    3. local store only: ``$RATCHET_HOME/pseudonym.key``, generated once (32 random bytes, 0600);
    4. otherwise :class:`PseudonymKeyMissing`: with a remote store, workers on other machines
       would each generate their own key and the same user would get different pseudonyms.
    """
    if settings.pseudonym_key is not None:
        key = settings.pseudonym_key.get_secret_value().encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyInsecure(
                f"RATCHET_PSEUDONYM_KEY is shorter than {MIN_KEY_BYTES} bytes"
            )
        return key
    if secret_block_value:
        key = secret_block_value.encode("utf-8")
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyInsecure(
                f"the pseudonym key from the Secret block is shorter than {MIN_KEY_BYTES} bytes"
            )
        return key
    if not settings.store_is_local:
        raise PseudonymKeyMissing(
            "no pseudonymisation key: the store is remote, so every worker must share one key. "
            "Set RATCHET_PSEUDONYM_KEY or store it in a Prefect Secret block; a key is generated "
            "automatically only for a local store."
        )
    path = settings.home / KEY_FILE
    if path.exists():
        return _read_key_file(path)
    return _create_key_file(path)
