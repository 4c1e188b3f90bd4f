"""Optional extras in tests: skip where an extra is not installed, FAIL under CI.

CI installs every extra (the ``test`` extra pulls in ``train``), so a test that would skip
there for a missing package is a broken CI image, not an optional feature: under ``CI`` set to
anything but empty/``false``/``0`` the missing extra fails the test (or the module's collection).
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_extra(extra: str, *modules: str) -> None:
    """Skip (locally) or fail (under CI) unless every module of ``extra`` is importable."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reason = f"the {extra!r} extra is not installed (missing: {', '.join(missing)})"
    if under_ci():
        pytest.fail(f"{reason}; CI must install it: pip install '.[test]'", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
