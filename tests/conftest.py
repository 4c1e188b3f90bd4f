"""Shared test setup: quiet, offline Prefect and GX; every test's Ratchet state in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ratchet" / "data" / "sample"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def ratchet_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean RATCHET_* environment whose home (store, SQLite, key file) is under tmp_path."""
    for key in list(os.environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)
    home = tmp_path / "ratchet-home"
    monkeypatch.setenv("RATCHET_HOME", str(home))
    return home
