"""Reading input files: lines numbered and capped however the blocks fall, gzip transparent."""

from __future__ import annotations

import gzip

import pytest

from ratchet.ingest.reader import InputError, expand_inputs, iter_batches, iter_lines

CONTENT = b'{"a": 1}\r\n\n' + b"x" * 50 + b"\nshort\n" + b"y" * 30 + b"\nlast-no-newline"
EXPECTED = [
    (1, b'{"a": 1}', False),
    (2, b"", False),
    (3, b"x" * 20, True),
    (4, b"short", False),
    (5, b"y" * 20, True),
    (6, b"last-no-newline", False),
]


@pytest.mark.parametrize("block_size", [1, 3, 7, 16, 21, 64, 1 << 20])
@pytest.mark.parametrize("compress", [False, True])
def test_lines_are_the_same_whatever_the_block_size(tmp_path, block_size, compress) -> None:
    f = tmp_path / ("in.jsonl.gz" if compress else "in.jsonl")
    f.write_bytes(gzip.compress(CONTENT) if compress else CONTENT)
    got = [(ln.number, ln.data, ln.oversize) for ln in iter_lines(f, 20, block_size=block_size)]
    assert got == EXPECTED


def test_batches_keep_line_numbers(tmp_path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(b"\n".join(str(i).encode() for i in range(1, 26)) + b"\n")
    batches = list(iter_batches(f, 10, 100))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [ln.number for b in batches for ln in b] == list(range(1, 26))
    assert batches[2][-1].data == b"25"


def test_expand_inputs_takes_files_globs_and_folders(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("d/a.jsonl", "d/b.jsonl.gz", "d/notes.txt", "c.ndjson"):
        (tmp_path / name).write_bytes(b"")
    found = expand_inputs(
        [str(tmp_path / "d"), str(tmp_path / "*.ndjson"), str(tmp_path / "d/a.jsonl")]
    )
    assert [p.name for p in found] == ["a.jsonl", "b.jsonl.gz", "c.ndjson"]
    with pytest.raises(InputError, match="no input files match"):
        expand_inputs([str(tmp_path / "missing-*.jsonl")])
