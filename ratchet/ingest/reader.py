"""Input files: resolve paths/globs/folders, hash them, and stream their lines in batches.

Streaming keeps peak memory a function of the batch size, never of the file size. Lines are
yielded as raw bytes with their 1-based line number, so a line that is not UTF-8 can still be
quarantined with its position. ``.gz`` files are read through gzip transparently.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")


class InputError(ValueError):
    """A path given to ingest does not name any readable input file."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    data: bytes  # without the trailing newline
    oversize: bool  # longer than the limit: ``data`` holds only its first bytes


def expand_inputs(specs: list[str]) -> list[Path]:
    """Files, globs or folders (searched for *.jsonl[.gz] files) to a sorted, unique list."""
    out: dict[Path, None] = {}
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(_SUFFIXES))
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
        if not found:
            raise InputError(f"no input files match {spec!r}")
        for f in found:
            out.setdefault(f.resolve(), None)
    return list(out)


def _open(path: Path) -> BinaryIO:
    raw = path.open("rb")
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    raw.seek(0)
    return raw


def file_sha256(path: Path) -> str:
    """Hash of the file's bytes as stored (compressed or not): the source file's identity."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def iter_lines(
    path: Path,
    max_bytes: int,
    block_size: int = 1 << 22,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
) -> Iterator[Line]:
    """Every line of a file, blank ones included (the caller counts them), lengths capped.

    Reads in blocks (a ``readline`` per line cost the writer process ~10 µs a record). An
    over-size line is never held whole: its first ``max_bytes`` are kept (enough to quarantine a
    redacted excerpt) and the rest is skipped up to its newline.

    ``start``/``end``/``first_line``: only the bytes ``[start, end)`` of an uncompressed file,
    numbered from ``first_line`` (a byte range cut at line boundaries by
    :func:`ratchet.ingest.ranges.cut_ranges`, so line numbers stay those of the whole file).
    """
    number = first_line - 1
    carry = b""  # a partial line from the previous block (at most max_bytes)
    skipping = False  # inside an over-size line whose head was already yielded
    with _open(path) if not start and end is None else path.open("rb") as f:
        f.seek(start)
        left = None if end is None else max(0, end - start)
        while block := f.read(block_size if left is None else min(block_size, left)):
            if left is not None:
                left -= len(block)
            parts = (carry + block).split(b"\n") if carry else block.split(b"\n")
            carry = b""
            tail = parts.pop()  # after the block's last newline: maybe a partial line
            for line in parts:
                if skipping:  # this newline ends the over-size line (already yielded)
                    skipping = False
                    continue
                number += 1
                if len(line) > max_bytes:
                    yield Line(number, line[:max_bytes], True)
                else:
                    yield Line(number, line[:-1] if line.endswith(b"\r") else line, False)
            if skipping:
                continue
            if len(tail) > max_bytes:
                number += 1
                yield Line(number, tail[:max_bytes], True)
                skipping = True
            else:
                carry = tail
    if carry:  # a last line without a newline
        yield Line(number + 1, carry[:-1] if carry.endswith(b"\r") else carry, False)


def iter_batches(path: Path, batch_size: int, max_bytes: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in iter_lines(path, max_bytes):
        batch.append(line)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
