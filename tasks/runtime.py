"""What every task needs from its environment: settings, store, database, pseudonym key.

Tasks rebuild these from settings on whichever worker runs them rather than receiving them as
parameters: a store client or a session factory does not serialise, and a secret passed as a
parameter would be shown (Prefect masks ``SecretStr`` parameters to asterisks, so it would not
even work). Each is cached per process.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from ratchet.db import open_database
from ratchet.redaction import resolve_pseudonym_key
from ratchet.settings import Settings, get_settings
from ratchet.store import Store

PSEUDONYM_SECRET_BLOCK = "ratchet-pseudonym-key"


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=8)
def store_for(root: str, endpoint: str | None) -> Store:
    return Store(root, s3_endpoint_url=endpoint)


def store(s: Settings) -> Store:
    return store_for(s.store_root, s.s3_endpoint_url)


def sessions(s: Settings) -> sessionmaker[Session]:
    return open_database(s)


_block_value: str | None = None  # cached once found; a missing block is asked again next time


def _secret_block_value() -> str | None:
    """The key from a Prefect Secret block, when one is registered (and a server is reachable)."""
    global _block_value
    if _block_value is None:
        try:
            from prefect.blocks.system import Secret

            _block_value = str(Secret.load(PSEUDONYM_SECRET_BLOCK).get())  # type: ignore[union-attr]
        except Exception:  # no block, no server: fall through to the next source
            return None
    return _block_value


def pseudonym_key(s: Settings) -> bytes:
    """The shared HMAC key: environment, then a Secret block, then (local store only) a file."""
    if s.pseudonym_key is not None:
        return resolve_pseudonym_key(s)
    return resolve_pseudonym_key(s, secret_block_value=_secret_block_value())
