"""What to ingest: paths resolved to files, each file's kind told by its content, and the input
list that lets a flow read files without their paths ever being a flow parameter.

**How a folder is read** (``ratchet ingest DIR``). Every file under it whose name ends in
``.jsonl``, ``.ndjson`` or ``.json`` (optionally ``.gz``) is a candidate; the file's *content*
decides what it is, never its name (:func:`sniff_kind`):

- the first readable JSON object among its first lines decides: an OpenAI chat log (a
  ``request`` object and a ``response``) or an object with ``messages`` or ``response`` is an
  **interaction** file; an object with ``rating``, ``thumb`` or ``feedback_id`` (and no
  ``messages``) is a **feedback** file; an object with a registered source's shape (an OTLP
  trace request, a vendor's page: :mod:`ratchet.ingest.adapters`) is what that source says;
  other objects and unreadable lines do not decide;
- a file with no line that decides is read as interactions, so its lines are quarantined with
  their reasons (a garbage file fails loudly, it is not skipped);
- a ``.json`` file whose whole content is one JSON document that is not a record (the sample's
  ``manifest.json``, a config) is **skipped** with a warning that names it (redacted);
- a file with no content (or only blank lines) is **empty**: a warning and a zero count.

Files given with ``--feedback`` are feedback whatever their shape. A folder that holds no input
file is a warning and a zero count (a weekly run on a quiet week); a path or glob that matches
nothing is an error.

**Input lists.** A flow parameter is stored by Prefect as given, so a path holding a name or an
e-mail address would sit in Prefect's database. The CLI therefore writes the resolved paths to
``$RATCHET_HOME/inputs/<ref>.json`` (local state, like the SQLite ledger and the key file; mode
0600) and passes the flow only ``<ref>``, a hash of the list. The flow and its tasks read the
paths from there and show each file by its redacted name and its sha256; the CLI deletes the
list when the run is over.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ratchet.ingest.adapters import formats_of, looks_like_openai_chat
from ratchet.ingest.reader import _SUFFIXES, InputError, _open

SniffedKind = Literal["interactions", "feedback", "not_records", "empty"]
InputKind = Literal["auto", "interactions", "feedback"]
_SNIFF_LINES = 50
_SNIFF_BYTES = 1 << 20  # enough for the first lines; a whole .json document may be larger
_MAX_DOCUMENT_BYTES = 64 << 20  # a .json document larger than this is read as lines
_FEEDBACK_KEYS = frozenset({"rating", "thumb", "feedback_id"})
_REF = re.compile(r"^in-[0-9a-f]{32}$")


class InputListError(ValueError):
    """An input list reference does not name a readable input list."""


@dataclass
class ResolvedInputs:
    """Files to ingest, in order, with their requested kind; empty folders counted."""

    files: list[tuple[InputKind, Path]] = field(default_factory=list)
    empty_folders: int = 0


def _candidates(spec: str) -> tuple[list[Path], bool]:
    """Files for one path, glob or folder; ``True`` when it is a folder with none."""
    import glob

    p = Path(spec)
    if p.is_dir():
        found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(_SUFFIXES))
        return found, not found
    if p.is_file():
        return [p], False
    found = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
    if not found:
        raise InputError(f"no input files match {spec!r}")
    return found, False


def resolve_inputs(paths: list[str], feedback_paths: list[str]) -> ResolvedInputs:
    """Interaction specs (kind told by content) then feedback specs, each file once."""
    out = ResolvedInputs()
    seen: set[Path] = set()
    for kind, specs in (("auto", paths), ("feedback", feedback_paths)):
        for spec in specs:
            found, empty_folder = _candidates(spec)
            out.empty_folders += empty_folder
            for f in found:
                resolved = f.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    out.files.append((kind, resolved))  # type: ignore[arg-type]
    return out


def _decides(obj: object) -> SniffedKind | None:
    if not isinstance(obj, dict):
        return None
    if looks_like_openai_chat(obj) or "messages" in obj or "response" in obj:
        return "interactions"
    if _FEEDBACK_KEYS & obj.keys() or obj.get("event") == "consent_withdrawn":
        return "feedback"
    found = formats_of(obj)  # a source's shape (an OTLP request, a vendor page): its kind
    return found[0][1] if found else None


def sniff_kind(path: Path) -> SniffedKind:
    """What a file holds, from its first lines (see the module docstring for the rule)."""
    with _open(path) as f:
        head = f.read(_SNIFF_BYTES)
    if not head.strip():
        return "empty"
    lines = [ln for ln in head.split(b"\n")[:_SNIFF_LINES] if ln.strip()]
    for line in lines:
        try:
            kind = _decides(json.loads(line))
        except (ValueError, RecursionError):
            continue
        if kind is not None:
            return kind
    if path.name.lower().removesuffix(".gz").endswith(".json") and _is_a_document(path, head):
        return "not_records"
    return "interactions"


def _is_a_document(path: Path, head: bytes) -> bool:
    """True when the whole file is one JSON document that is not a record: a manifest."""
    if len(head) >= _SNIFF_BYTES:
        if path.stat().st_size > _MAX_DOCUMENT_BYTES:
            return False
        with _open(path) as f:
            head = f.read(_MAX_DOCUMENT_BYTES + 1)
        if len(head) > _MAX_DOCUMENT_BYTES:
            return False
    try:
        doc = json.loads(head)
    except (ValueError, RecursionError):
        return False
    # a JSON array of records (a vendor's list endpoint saved as .json) is records, not a manifest
    items = doc[:_SNIFF_LINES] if isinstance(doc, list) else [doc]
    return isinstance(doc, dict | list) and all(_decides(o) is None for o in items)


_PIECES = re.compile(r"([_\s]+)")


def display_name(redactor: object, name: str) -> str:
    """A file name fit for logs, run names and the ledger: each ``_``/space-separated piece
    redacted on its own (a phone number glued to an e-mail by ``_`` is a word character away
    from being missed), then joined back."""
    redact = redactor.redact_text  # type: ignore[attr-defined]
    return "".join(p if _PIECES.fullmatch(p) else redact(p)[0] for p in _PIECES.split(name) if p)


# --- input lists ---------------------------------------------------------------------------------
def _inputs_dir(home: Path) -> Path:
    return home / "inputs"


def write_input_list(home: Path, entries: list[tuple[InputKind, Path]]) -> str:
    """Write the list under ``home/inputs/`` (0600) and return its reference (a content hash:
    the same list gives the same reference, and the reference says nothing about the paths)."""
    body = json.dumps({"inputs": [[k, str(p)] for k, p in entries]}, sort_keys=True).encode()
    ref = "in-" + hashlib.sha256(body).hexdigest()[:32]
    folder = _inputs_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{ref}.json"
    tmp = folder / f".{ref}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    os.replace(tmp, target)
    return ref


def read_input_list(home: Path, ref: str) -> list[tuple[InputKind, Path]]:
    """The entries of an input list, or :class:`InputListError` naming the reference."""
    if not _REF.match(ref):
        raise InputListError("an input list reference looks like in-<32 hex digits>")
    try:
        body = json.loads((_inputs_dir(home) / f"{ref}.json").read_bytes())
    except (OSError, ValueError):
        raise InputListError(
            f"input list {ref} is not readable under RATCHET_HOME/inputs"
        ) from None
    return [(k, Path(p)) for k, p in body["inputs"]]


def remove_input_list(home: Path, ref: str) -> None:
    """Delete an input list once its run is over: it holds raw paths, and local state should
    not keep them longer than the run needs them (a retry of that run from the UI then stops
    with :class:`InputListError`; run ``ratchet ingest`` again instead)."""
    if _REF.match(ref):
        (_inputs_dir(home) / f"{ref}.json").unlink(missing_ok=True)


__all__ = [
    "InputKind",
    "InputListError",
    "ResolvedInputs",
    "SniffedKind",
    "display_name",
    "read_input_list",
    "remove_input_list",
    "resolve_inputs",
    "sniff_kind",
    "write_input_list",
]
