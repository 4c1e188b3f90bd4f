"""The README's links point inside the repository, at files that exist (a fresh clone has no
``../shared/``)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`(\.\./[^`]*)`")


def test_readme_links_stay_inside_the_repository() -> None:
    text = (REPO / "README.md").read_text()
    assert not CODE_PATH.findall(text), "README names a path outside the repository"
    local = [t for t in LINK.findall(text) if "://" not in t and not t.startswith("#")]
    assert local, "expected links to the design and style documents"
    for target in local:
        path = (REPO / target.split("#")[0]).resolve()
        assert path.is_relative_to(REPO), target
        assert path.exists(), target
