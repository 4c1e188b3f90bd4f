"""Ratchet: turn a deployed agent's conversations and feedback into a better agent, only forward.

The core package never imports Prefect: everything here is plain typed functions and small
service classes, usable and testable without an orchestrator (``tasks`` and ``flows`` wrap it).
"""

__version__ = "0.1.0"
