"""What counts as a secret *value* after ``password =``, ``token:``, ``api_key=`` and the like.

Coding assistants' logs are full of secret-named variables bound to code: ``token = await
fetch()``, ``api_key = os.environ["KEY"]``, ``password = driver.findElement(...)``,
``api_key=$(yq …)``, ``for (auto& token : tokens)``. Replacing those destroys the code and
protects nothing, so an assignment rule replaces only a *literal*:

* a quoted string (``"…"``, ``'…'``, JSON ``\\"…\\"``) without whitespace, unless it is a
  template (``${X}``, ``{{ x }}``, ``{token}``, ``%s``, ``$VAR``) or an obvious placeholder;
* a bare token that is shaped like a secret: at least 6 characters; not a call, index, attribute
  access (``a.b``), variable reference (``$x``, ``${x}``, ``%x%``), flag, bind parameter
  (``:pw``), YAML tag/anchor (``!ENV``, ``*ref``) or template; a closing ``.``/``:`` is not part
  of it (``pw=Hunter2-Hunter2.`` ends a sentence; ``lambda:`` is then a word); letters only never (that is an
  identifier or a word: ``hashedPassword``, ``string``, ``None``), unless 32+ long; an
  identifier with digits only when it has two or more digits and 8+ characters (``token1`` is a
  variable, ``a8f5f167f44f`` is not); digits only from 6 digits; anything with other
  punctuation (``s3cr3t!``, ``django-insecure-…``) from 6 characters.

**Placeholders are kept** (decision for issue 15): ``your_api_key_here``, ``<password>``,
``my_password``, ``YOUR_TOKEN``, ``xxxxxxxx``, ``********``, ``changeme``, ``REPLACE_ME``,
``example-token``, ``dummy``, ``TODO``, ``...``. They are what documentation and tutorials put
where a secret goes; they identify nobody, and replacing them would teach a model that the
placeholder itself is a secret. Documentation's stock examples count as placeholders too
(``mysecretpassword``, ``my-secret-token``); a value that merely contains such a word among
other characters (``hunter2hunter2``, ``S3cure!Password``) is still replaced.
"""

from __future__ import annotations

import re

_PLACEHOLDER = re.compile(
    r"""(?ix)
    ^(?: <[^<>]*> | \[[^\[\]]*\] | \(?\.{3}\)? | x{3,} | \*{3,} | \#{3,} | 0{6,} | -+ | _+
      | (?:my|your|the|some|a)?[-_ ]?(?:db[-_]?|api[-_]?|secret[-_]?|access[-_]?|auth[-_]?)?
        (?:password|passwd|pwd|pass|secret|token|key|apikey|api[-_]key|credentials?)
        (?:[-_ ]?(?:here|value|goes[-_ ]?here|placeholder|example))?
      | change[-_ ]?me | replace[-_ ]?me | fill[-_ ]?me | todo | tbd | fixme | redacted | dummy
      | null | none | nil | undefined | true | false | empty | default
    )$
    | ^your[-_ ] | [-_ ]here$ | example | placeholder | ^insert[-_ ] | ^enter[-_ ]
    | ^<.*>$
    """
)
# Template or reference syntax anywhere in the value.
_TEMPLATE = re.compile(r"\$\{|\$\(|\{\{|\}\}|^\{[^{}]*\}$|%[sdr]\b|%\(\w+\)|^\$\w|^%\w+%$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Dotted identifiers (``self.password``, ``process.env.API_KEY``): attribute access.
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\??\.[A-Za-z_$][\w$]*)+")
_CODE_CHARS = frozenset("()[]{}$`")
_OPENERS = frozenset("([{")
_BAD_FIRST = frozenset("-:@!*&%=<>|?.+/#~^")


def is_placeholder(value: str) -> bool:
    """An obvious stand-in for a secret (see the module docstring): kept, not redacted."""
    return bool(_PLACEHOLDER.search(value)) or bool(_TEMPLATE.search(value))


def quoted_secret(value: str) -> bool:
    """Whether a quoted literal after a secret-named key is replaced."""
    return len(value) >= 4 and not is_placeholder(value)


def bare_secret_len(value: str) -> int:
    """How much of an unquoted token after a secret-named key is a secret value: the token
    without a sentence's closing ``.``/``:`` or an unmatched ``)``/``]``/``}`` (the end of the
    text around it), when that is secret-shaped; else 0."""
    core = value.rstrip(".:")
    if not _OPENERS.intersection(core):  # an unmatched closer ends the enclosing text: "(pw=…)"
        core = core.rstrip(")]}").rstrip(".:")
    return len(core) if core and bare_secret(core) else 0


def bare_secret(value: str) -> bool:
    """Whether an unquoted token after a secret-named key is a secret value (not code)."""
    n = len(value)
    if n < 6 or value[0] in _BAD_FIRST or value[-1] in ":." or _CODE_CHARS.intersection(value):
        return False
    if _DOTTED.fullmatch(value) or is_placeholder(value):
        return False
    digits = sum(ch.isdigit() for ch in value)
    if value.isdigit():
        return True
    if value.isalpha():
        return n >= 32
    if _IDENT.fullmatch(value):
        return digits >= 2 and n >= 8
    return True
