"""Settings: environment, infrastructure and secrets, from ``RATCHET_*`` variables.

Kept apart from the pipeline config (thresholds and rules, versioned YAML): settings differ per
machine and carry secrets; the pipeline config is reviewed like code. Built by :func:`get_settings`
at the edge (CLI, flow start), never at import time, and nowhere else reads the environment.

| variable | meaning | default |
|---|---|---|
| ``RATCHET_HOME`` | local state folder (store, database, key file); made absolute once | ``./.ratchet`` |
| ``RATCHET_STORE`` | store root: a folder or a URL (``s3://bucket/prefix``, ``memory://x``) | ``$RATCHET_HOME/store`` |
| ``RATCHET_INBOX`` | where the weekly run finds new files: ``logs/`` and ``feedback/`` under it | ``$RATCHET_HOME/inbox`` |
| ``RATCHET_DATABASE_URL`` | SQLAlchemy URL of the training database | ``sqlite:///$RATCHET_HOME/ratchet.db`` |
| ``RATCHET_CONFIG`` | a YAML file layered over the config folder's files | none |
| ``RATCHET_ENV`` | which ``<env>.yaml`` delta to layer over ``base.yaml`` (must exist) | ``local`` |
| ``RATCHET_CONFIG_DIR`` | the config folder (``base.yaml``, ``<env>.yaml``; must exist) | ``ratchet/configs`` in the package |
| ``RATCHET_PSEUDONYM_KEY`` | secret key for pseudonymising user ids (HMAC) | generated once, local store only |
| ``RATCHET_S3_ENDPOINT_URL`` | endpoint of an S3-compatible store (MinIO, moto, R2...) | AWS |
| ``RATCHET_OPENAI_API_KEY`` | key for the ``openai`` backend (falls back to ``OPENAI_API_KEY``) | none |
| ``RATCHET_OPENAI_BASE_URL`` | OpenAI API or OpenAI-compatible server (falls back to ``OPENAI_BASE_URL``) | the SDK's |
| ``RATCHET_USER`` | who is recorded as ``created_by`` on training runs | ``ratchet`` |
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The config files shipped inside the package (``ratchet/configs``), so an installed wheel
finds them; ``RATCHET_CONFIG_DIR`` points elsewhere."""
REPO_CONFIG_DIR = PACKAGE_CONFIG_DIR  # the name earlier code and tests import


class Settings(BaseSettings):
    """Where things live and the secrets to reach them; see the module docstring for the table."""

    model_config = SettingsConfigDict(
        env_prefix="RATCHET_", extra="ignore", hide_input_in_errors=True, frozen=True
    )

    home: Path = Field(
        default=Path(".ratchet"),
        description="Local state folder; a relative path is resolved against the current folder "
        "once, when the settings are built, and shown absolute (`ratchet config show`).",
    )
    store: str | None = Field(default=None, description="Store root, folder or URL.")
    database_url: str | None = Field(default=None, description="SQLAlchemy database URL.")
    inbox: Path | None = Field(
        default=None, description="Inbox the weekly run reads (logs/ and feedback/ under it)."
    )
    config: Path | None = Field(default=None, description="YAML layered over configs/.")
    env: str = Field(default="local", description="Which configs/<env>.yaml delta applies.")
    config_dir: Path = Field(
        default=PACKAGE_CONFIG_DIR, description="Folder holding base.yaml and <env>.yaml."
    )
    pseudonym_key: SecretStr | None = Field(default=None, description="HMAC key for user ids.")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint.")
    user: str | None = Field(
        default=None, description="Who is recorded as created_by on training runs (ratchet)."
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("RATCHET_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="API key for the openai backend.",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RATCHET_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        description="Base URL of the OpenAI API or of an OpenAI-compatible server (vLLM, "
        "Ollama, llama.cpp); none: the SDK's default (api.openai.com).",
    )

    @field_validator("env")
    @classmethod
    def _env_is_a_name(cls, v: str) -> str:
        if not v.replace("-", "").replace("_", "").isalnum():
            raise ValueError("must be a plain name such as 'local' or 'production'")
        return v

    @field_validator("home")
    @classmethod
    def _home_absolute(cls, v: Path) -> Path:
        return Path(os.path.abspath(v.expanduser()))

    @property
    def store_root(self) -> str:
        return self.store or str(self.home / "store")

    @property
    def inbox_root(self) -> Path:
        """Where new logs (``logs/``) and feedback (``feedback/``) wait for the weekly run."""
        return self.inbox or self.home / "inbox"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'ratchet.db'}"

    @property
    def store_is_local(self) -> bool:
        root = self.store_root
        return "://" not in root or root.startswith("file://")

    def masked(self) -> dict[str, object]:
        """The settings as printable values, secrets shown only as set / not set."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                out[name] = "**********"
            elif name == "database_url" and value:
                out[name] = _mask_url_password(value)
            else:
                out[name] = str(value) if value is not None else None
        out["store_root"] = self.store_root
        out["inbox_root"] = str(self.inbox_root)
        out["db_url"] = _mask_url_password(self.db_url)
        return out

    def state(self) -> dict[str, object]:
        """Which home, store and database are in use, and whether each exists yet (a store or
        database that is not a local path shows ``None``: only a connection would tell)."""
        url = self.db_url
        db_file = _sqlite_file(url)
        return {
            "home": str(self.home),
            "home_exists": self.home.is_dir(),
            "store": self.store_root,
            "store_exists": Path(self.store_root.removeprefix("file://")).is_dir()
            if self.store_is_local
            else None,
            "database": _mask_url_password(url),
            "database_exists": db_file.is_file() if db_file is not None else None,
        }

    def missing_state(self) -> str | None:
        """Why a read-only command would find nothing here, naming where it looked; None when
        the state exists (or lives on a server this cannot check without connecting).

        A read-only command stops on this instead of opening the database, which would create
        an empty ``.ratchet/`` in whatever folder the operator happens to be in.
        """
        db_file = _sqlite_file(self.db_url)
        if db_file is None or db_file.is_file():
            return None
        return (
            f"no Ratchet state found: no database at {db_file} (home {self.home}). Run from the "
            "folder that holds .ratchet/, or set RATCHET_HOME (or RATCHET_DATABASE_URL); "
            "`ratchet ingest` creates the state"
        )


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy understands: nothing to check
        return None
    if (
        u.get_backend_name() != "sqlite"
        or not u.database
        or u.database == ":memory:"
        or u.database.startswith("file:")
    ):
        return None
    return Path(os.path.abspath(Path(u.database).expanduser()))


def _mask_url_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: print nothing of it
        return "<unparseable URL>"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides); the one place env is read."""
    return Settings(**overrides)  # type: ignore[arg-type]
