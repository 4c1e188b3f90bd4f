"""A decoded view of escaped text, with a map back to the original offsets.

Real text arrives escaped: Markdown exporters write ``first\\_last@provider.com``, HTML writes
``jane&#64;example.com`` or ``&commat;``, JSON writes ``\\u0040``, URLs write ``%40``. The
detectors are written for plain text, so the engine runs them a second time over this decoded
view and maps each hit back to the original span, which then covers the *whole* escaped value
(``first\\_last@provider.com`` becomes one ``[EMAIL]``, not ``first\\_[EMAIL]``).

Decoded here: a backslash before ASCII punctuation (Markdown; ``\\/`` is JSON's too), except a
quote or a backslash (JSON string syntax the detectors already read as such); ``\\uXXXX`` (JSON,
surrogates left alone); ``&#NN;`` and ``&#xHH;`` numeric character references; HTML5 named
entities (``&commat;``, ``&period;``, ``&amp;``; ``&nbsp;`` reads as a space); ``%XX`` URL escapes
(one byte each, so multi-byte UTF-8 sequences decode to Latin-1 look-alikes, not to their
character). ``\\n``, ``\\r`` and ``\\t`` stay as written: the detectors treat them as boundaries.
"""

from __future__ import annotations

import html.entities
import re

# Anything that may be an escape the decoder rewrites (a superset; cheap to search).
HINT = re.compile(
    r"""\\[!#$%&()*+,\-./:;<=>?@\[\]^_`{|}~u]|&#?[A-Za-z0-9]{1,32};|%[0-9A-Fa-f]{2}"""
)
# The same hint in RE2 syntax, for the column prefilter (a row holding only escaped PII must
# still become a candidate).
HINT_RE2 = r"""\\[!#$%&()*+,\-./:;<=>?@\[\]^_`{|}~]|\\u[0-9A-Fa-f]{4}|&#?[A-Za-z0-9]{1,32};|%[0-9A-Fa-f]{2}"""

_ESCAPE = re.compile(
    r"""\\\\|\\([!#$%&()*+,\-./:;<=>?@\[\]^_`{|}~])|\\u([0-9A-Fa-f]{4})|&#([0-9]{1,7});"""
    r"""|&#[xX]([0-9A-Fa-f]{1,6});|&([A-Za-z][A-Za-z0-9]{0,31};)|%([0-9A-Fa-f]{2})"""
)
_NAMED = dict(html.entities.html5)
_NAMED["nbsp;"] = " "


def _char(code: int) -> str | None:
    if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF:
        return chr(code)
    return None


def decode(text: str) -> tuple[str, list[int]]:
    """``(decoded, src)``: ``decoded[i]`` came from ``text[src[i]:src[i + 1]]`` (``src`` has one
    entry more than ``decoded``), so a decoded span ``[s, e)`` is ``text[src[s]:src[e]]``.
    Returns ``text`` itself and an empty list when nothing decodes."""
    out: list[str] = []
    src: list[int] = []
    last = 0
    changed = False
    for m in _ESCAPE.finditer(text):
        punct, uni, dec, hexa, name, pct = m.groups()
        if punct is not None:
            repl: str | None = punct
        elif uni is not None:
            repl = _char(int(uni, 16))
        elif dec is not None:
            repl = _char(int(dec))
        elif hexa is not None:
            repl = _char(int(hexa, 16))
        elif name is not None:
            repl = _NAMED.get(name)
        elif pct is not None:
            repl = chr(int(pct, 16))
        else:  # an escaped backslash: kept as written, and it escapes nothing after it
            repl = None
        if repl is None:
            continue
        s, e = m.span()
        out.append(text[last:s])
        src.extend(range(last, s))
        out.append(repl)
        # A named entity may stand for two characters: both map to the whole entity.
        src.extend([s] * len(repl))
        if len(repl) > 1:
            src[-len(repl) + 1 :] = [s] * (len(repl) - 1)
        last = e
        changed = True
    if not changed:
        return text, []
    out.append(text[last:])
    src.extend(range(last, len(text)))
    src.append(len(text))
    return "".join(out), src


def to_original(src: list[int], start: int, end: int) -> tuple[int, int]:
    """The original span of the decoded span ``[start, end)``: whole escapes only."""
    s = src[start]
    e = src[end] if end < len(src) else src[-1]
    # An end inside a multi-character entity's expansion extends to the entity's end.
    while end < len(src) - 1 and src[end] == src[end - 1]:
        end += 1
        e = src[end]
    return s, e
