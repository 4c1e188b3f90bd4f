"""The pseudonymisation key from a Prefect Secret block, for workers that share a remote store."""

from __future__ import annotations

import pytest

from ratchet.redaction import PseudonymKeyMissing
from ratchet.settings import get_settings
from tasks import runtime


def test_remote_store_takes_the_key_from_the_secret_block(prefect_harness, ratchet_env, monkeypatch) -> None:
    from prefect.blocks.system import Secret

    monkeypatch.setenv("RATCHET_STORE", "s3://shared-bucket/ratchet")
    monkeypatch.setattr(runtime, "_block_value", None)
    settings = get_settings()
    with pytest.raises(PseudonymKeyMissing):  # no env key, no block, remote store: refuse
        runtime.pseudonym_key(settings)
    assert not (ratchet_env / "pseudonym.key").exists()  # and no local key was invented

    value = "block-held-key-" + "x" * 32
    Secret(value=value).save(runtime.PSEUDONYM_SECRET_BLOCK, overwrite=True)
    key = runtime.pseudonym_key(settings)
    assert key == value.encode()

    monkeypatch.setenv("RATCHET_PSEUDONYM_KEY", "env-wins-" + "y" * 32)
    assert runtime.pseudonym_key(get_settings()) != key  # the environment comes first
