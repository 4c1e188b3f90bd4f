"""The pseudonymisation key from a Prefect Secret block, for workers that share a remote store."""

from __future__ import annotations

import pytest

from ratchet.redaction import PseudonymKeyMissing
from ratchet.settings import get_settings
from tasks import runtime


def test_remote_store_takes_the_key_from_the_secret_block(
    prefect_harness, ratchet_env, monkeypatch
) -> None:
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


def test_an_unreachable_secret_block_stops_instead_of_inventing_a_key(
    ratchet_env, monkeypatch
) -> None:
    """A server that cannot be asked is not a missing block: refuse, and write no key file."""
    import socket

    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from ratchet.redaction.pseudonym import PseudonymKeyUnavailable

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(runtime, "_block_value", None)
    with temporary_settings(
        updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api", PREFECT_CLIENT_MAX_RETRIES: 0}
    ):
        with pytest.raises(PseudonymKeyUnavailable, match="ratchet-pseudonym-key"):
            runtime.pseudonym_key(get_settings())  # a local store: it used to make a key file
    assert not (ratchet_env / "pseudonym.key").exists()
