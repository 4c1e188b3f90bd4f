"""Training and answering backends, by name, behind one interface (:mod:`ratchet.backends.base`).

Each backend lives in its own module and is imported only when asked for, so the embedded
default (``local``) never pulls in torch, and a missing optional extra is a clear error naming
the extra, not an ImportError at start-up.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ratchet.backends.base import Answerer, BackendError, ModelSpec, Trainer

#: backend name -> (module, the pip extra that provides its dependencies, or None)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "local": ("ratchet.backends.local", None),
    "logs": ("ratchet.backends.logs", None),
    "openai": ("ratchet.backends.openai", None),
    "trl": ("ratchet.backends.trl", "train"),
}


@dataclass(frozen=True)
class BackendContext:
    """What a backend may use: the store, the settings and the validated pipeline config."""

    store: Any  # ratchet.store.Store
    settings: Any  # ratchet.settings.Settings
    config: Any  # ratchet.config.PipelineConfig


def _module(name: str) -> Any:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    module, extra = BACKENDS[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra is None:
            raise
        raise BackendError(
            f"backend {name!r} needs the {extra!r} extra: pip install 'agent-ratchet[{extra}]' "
            f"({exc.name or exc} is missing)"
        ) from exc


def trainer_for(name: str, context: BackendContext) -> Trainer:
    """The trainer of backend ``name``; each backend module defines ``make_trainer(context)``."""
    trainer: Trainer = _module(name).make_trainer(context)
    return trainer


def answerer_for(spec: ModelSpec, context: BackendContext) -> Answerer:
    """An answerer for a model version; each module defines ``make_answerer(spec, context)``.

    A few-shot candidate (``few_shot_dataset`` in its parameters) is its base backend's
    answerer wrapped by :mod:`ratchet.backends.fewshot`."""
    if "few_shot_dataset" in spec.parameters:
        from ratchet.backends import fewshot

        return fewshot.make_answerer(spec, context)
    answerer: Answerer = _module(spec.backend).make_answerer(spec, context)
    return answerer
