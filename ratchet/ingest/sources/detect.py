"""Read a source file (see :mod:`ratchet.ingest.adapters`) and turn it into records for ingest.

A source file is read as JSON lines (the Collector's file exporter writes one
``ExportTraceServiceRequest`` per line; a saved API page is one object per line), or, when its
first line is not JSON by itself, as one JSON document (a pretty-printed export); a document
that is a JSON array gives one object per element. Each object goes to the source whose shape
it has (with ``--format NAME``, all of them go to that one, which refuses what it cannot map);
canonical and openai-chat objects may sit among them. The mapped interactions are then joined
by conversation (:mod:`ratchet.ingest.sources.conversations`), and every record, or refusal,
becomes a :class:`SourceLine`: the ordinary ingest path validates, redacts and stores it,
with the source file's line number as ``source_line``.

A source file is held in memory while it is mapped (spans and pages are joined across lines,
and turns across the file); each mapped record is still bounded by ``ingest.max_record_bytes``.
A file object (one line, or the whole document) may be up to 64 MiB.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.ingest.adapters import (
    DETECT_OBJECTS,
    LINE_FORMATS,
    SOURCE_MODULES,
    FileObject,
    Mapped,
    RecordKind,
    detect_format,
    formats_of,
    from_openai_chat,
    line_format,
    source,
)
from ratchet.ingest.reader import Line, _open, iter_lines
from ratchet.ingest.records import Reject
from ratchet.ingest.sources.conversations import join_conversations

logger = logging.getLogger(__name__)
MAX_OBJECT_BYTES = 64 << 20
_VALUE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


@dataclass(frozen=True)
class SourceLine(Line):
    """A mapped record as ingest reads it: ``record`` says its kind; ``refused`` holds the
    (reason, detail) of a record the source could not map (``data`` is then what to show)."""

    record: RecordKind | None = None
    refused: tuple[str, str] | None = None


def _parse(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def _document(path: Path) -> Any:
    """The whole file as one JSON document, or ``_NOT_JSON``."""
    with _open(path) as f:
        body = f.read(MAX_OBJECT_BYTES + 1)
    if len(body) > MAX_OBJECT_BYTES:
        return _NOT_JSON
    return _parse(body)


def read_objects(path: Path) -> tuple[list[FileObject], list[Mapped]]:
    """The file's objects, and refusals for lines that are not JSON objects."""
    objects: list[FileObject] = []
    refused: list[Mapped] = []
    first = True
    for line in iter_lines(path, MAX_OBJECT_BYTES):
        if not line.data.strip():
            continue
        if line.oversize:
            refused.append(_refusal(line.number, "too_large", "file object over 64 MiB", line.data))
            continue
        obj = _parse(line.data)
        if first and obj is _NOT_JSON:
            doc = _document(path)
            if doc is not _NOT_JSON:  # a pretty-printed document: one object (or an array)
                items = doc if isinstance(doc, list) else [doc]
                return [FileObject(1, o) for o in items], []
        first = False
        if obj is _NOT_JSON:
            refused.append(_refusal(line.number, "not_json", "line is not valid JSON", line.data))
        else:
            objects.append(FileObject(line.number, obj))
    return objects, refused


def head_objects(path: Path, count: int = DETECT_OBJECTS) -> list[Any]:
    """The first parseable objects of a file (for detection), without reading all of it."""
    out: list[Any] = []
    seen_line = False
    for line in iter_lines(path, MAX_OBJECT_BYTES):
        if not line.data.strip() or line.oversize:
            continue
        obj = _parse(line.data)
        if obj is _NOT_JSON:
            if not seen_line:
                doc = _document(path)
                if doc is not _NOT_JSON:
                    return (doc if isinstance(doc, list) else [doc])[:count]
            seen_line = True
            continue
        seen_line = True
        out.append(obj)
        if len(out) >= count:
            break
    return out


def source_format(path: Path, fmt: str) -> str | None:
    """The source a file is read as (None: the ordinary line path). ``fmt="auto"`` detects it
    from the first objects, raising :class:`~ratchet.ingest.adapters.AmbiguousFormat`."""
    if fmt in SOURCE_MODULES:
        return fmt
    if fmt != "auto":
        return None
    name = detect_format(head_objects(path))
    return name if name in SOURCE_MODULES else None


def _refusal(
    line: int, reason: str, detail: str, raw: bytes, kind: RecordKind = "interaction"
) -> Mapped:
    return Mapped.refused(line, kind, reason, detail, raw)


def _raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, default=str).encode()


def _map_line_format(objects: list[FileObject]) -> Iterator[Mapped]:
    """Canonical and openai-chat objects found in a source file: passed through."""
    for o in objects:
        found = line_format(o.obj)
        if found is None:
            yield _refusal(
                o.line, "missing_field", "canonical: messages or response is required", _raw(o.obj)
            )
        elif found[1] == "feedback":
            yield Mapped.feedback(o.line, o.obj)
        elif found[0] == "openai-chat":
            try:
                yield Mapped.interaction(o.line, from_openai_chat(o.obj))
            except Reject as why:
                yield Mapped(o.line, "interaction", reject=why, raw=_raw(o.obj))
        else:
            yield Mapped.interaction(o.line, o.obj)


def _map_group(name: str, objects: list[FileObject], config: Any) -> list[Mapped]:
    """One source's share of the file, mapped; a mapper that fails refuses its objects (by
    the error's type, never a value) rather than the whole file."""
    if name in LINE_FORMATS:
        return list(_map_line_format(objects))
    try:
        return list(source(name).map_objects(objects, config))
    except _VALUE_ERRORS as exc:
        logger.warning(
            "%s: mapping failed (%s); its objects are quarantined", name, type(exc).__name__
        )
        detail = f"{name}: a value could not be read ({type(exc).__name__})"
        return [_refusal(o.line, "invalid_value", detail, _raw(o.obj)) for o in objects]


def map_file(path: Path, name: str, forced: bool, config: Any = None) -> list[Mapped]:
    """Every record (or refusal) of a source file, in file order, conversations joined.
    ``config``: the run's ``sources`` config section, handed to each source's mapper."""
    objects, mapped = read_objects(path)
    groups: dict[str, list[FileObject]] = {}
    for o in objects:
        if forced:
            groups.setdefault(name, []).append(o)
            continue
        found = formats_of(o.obj)
        if len(found) > 1:
            names = ", ".join(n for n, _ in found)
            mapped.append(
                _refusal(
                    o.line, "invalid_value", f"ambiguous object: the shape of {names}", _raw(o.obj)
                )
            )
            continue
        groups.setdefault(found[0][0] if found else name, []).append(o)
    for group, members in groups.items():
        mapped.extend(_map_group(group, members, config))
    mapped.sort(key=lambda m: m.line)  # stable: a line's records keep their order
    join_conversations(
        [m.record for m in mapped if m.record is not None and m.kind == "interaction"]
    )
    return mapped


def source_lines(
    path: Path, name: str, forced: bool, max_record_bytes: int, config: Any = None
) -> Iterator[SourceLine]:
    """The file's records as lines for the ordinary ingest path (see the module docstring)."""
    for m in map_file(path, name, forced, config):
        if m.reject is not None:
            raw = m.raw or _raw({"source": name})  # never blank: a blank line is not a refusal
            yield SourceLine(
                m.line, raw[:max_record_bytes], False, m.kind, (m.reject.reason, m.reject.detail)
            )
            continue
        data = _raw(m.record)
        oversize = len(data) > max_record_bytes
        yield SourceLine(m.line, data[:max_record_bytes] if oversize else data, oversize, m.kind)


__all__ = [
    "SourceLine",
    "head_objects",
    "map_file",
    "read_objects",
    "source_format",
    "source_lines",
]
