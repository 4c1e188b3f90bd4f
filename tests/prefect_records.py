"""Reading Prefect's records whole in tests that look for something that must not be there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def every(read: Callable[..., list[Any]], page: int = 200) -> list[Any]:
    """All records a Prefect client ``read_*`` call serves, page by page: the session's server
    holds the whole suite's runs, more than one page, and a scan for a leaked value that read
    only the first page could pass without seeing the run it is about."""
    out: list[Any] = []
    while True:
        got = read(limit=page, offset=len(out))
        out += got
        if len(got) < page:
            return out
