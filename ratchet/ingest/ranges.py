"""Byte ranges of a large input file, cut at line boundaries, for parallel ingest tasks.

A range is a plain, picklable value (start, end, first line number): the task that ingests it
opens the file itself and reads only ``[start, end)``, so nothing but three integers crosses to
a Dask worker. Line numbers stay those of the whole file (quarantine rows name the file's own
line), which is why cutting counts the newlines it passes: one sequential read of the file, at
disk speed, in the flow before the tasks start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of a file; ``first_line`` is the 1-based number of its first line."""

    start: int
    end: int
    first_line: int


def is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def cut_ranges(path: Path, chunk_bytes: int, block_size: int = 1 << 23) -> list[ByteRange]:
    """Ranges of about ``chunk_bytes`` each, every one starting just after a newline.

    A file no larger than ``chunk_bytes`` and a gzipped file (a compressed stream cannot be
    entered in the middle) come back as one range over the whole file. A line longer than a
    chunk simply makes its range longer: ranges never split a line, whatever its length.
    """
    if chunk_bytes < 1:
        raise ValueError("runtime.ingest_chunk_bytes must be positive")
    size = path.stat().st_size
    if size <= chunk_bytes or is_gzip(path):
        return [ByteRange(0, size, 1)]
    ranges: list[ByteRange] = []
    start, first_line = 0, 1
    lines_before = 0  # newlines in the bytes before ``offset``
    offset = 0
    target = chunk_bytes  # cut at the first newline at or after this offset
    with path.open("rb") as f:
        while block := f.read(block_size):
            pos = 0
            while target < offset + len(block):
                nl = block.find(b"\n", max(pos, target - offset))
                if nl < 0:
                    break  # the cut falls in a later block
                cut = offset + nl + 1
                lines_at_cut = lines_before + block.count(b"\n", 0, nl + 1)
                if cut < size:
                    ranges.append(ByteRange(start, cut, first_line))
                    start, first_line = cut, lines_at_cut + 1
                target = cut + chunk_bytes
                pos = nl + 1
            lines_before += block.count(b"\n")
            offset += len(block)
    ranges.append(ByteRange(start, size, first_line))
    return ranges
