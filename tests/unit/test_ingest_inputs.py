"""How inputs are found and told apart: a line's shape decides the kind, a manifest is skipped,
an empty folder is a warning, and the input list hides paths from whoever records parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratchet.config import PipelineConfig
from ratchet.ingest.inputs import (
    InputListError,
    display_name,
    read_input_list,
    remove_input_list,
    resolve_inputs,
    sniff_kind,
    write_input_list,
)
from ratchet.redaction import Redactor
from tests.conftest import SAMPLE_DIR

INTERACTION = {
    "interaction_id": "i-1",
    "agent_id": "a",
    "timestamp": "2026-11-02T10:00:00Z",
    "messages": [{"role": "user", "content": "hi"}],
    "response": "hello",
}
FEEDBACK = {
    "interaction_id": "i-1",
    "agent_id": "a",
    "timestamp": "2026-11-02T10:00:00Z",
    "thumb": 1,
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (json.dumps(INTERACTION) + "\n", "interactions"),
        (json.dumps(FEEDBACK) + "\n", "feedback"),
        (json.dumps({"feedback_id": "f-1", "interaction_id": "i", "rating": 4}) + "\n", "feedback"),
        (json.dumps({"request": {"messages": []}, "response": {"id": "x"}}) + "\n", "interactions"),
        # a broken first line does not decide; the next readable object does
        ("{not json\n" + json.dumps(FEEDBACK) + "\n", "feedback"),
        # nothing readable: interactions (the lines are then quarantined with their reasons)
        ("not json\nnor this\n", "interactions"),
        ("", "empty"),
        ("\n  \n\n", "empty"),
    ],
)
def test_a_lines_shape_decides_the_kind(tmp_path: Path, text: str, kind: str) -> None:
    assert sniff_kind(_write(tmp_path / "x.jsonl", text)) == kind


def test_a_json_document_that_is_not_a_record_is_skipped(tmp_path: Path) -> None:
    assert sniff_kind(SAMPLE_DIR / "manifest.json") == "not_records"
    assert (
        sniff_kind(_write(tmp_path / "conf.json", json.dumps({"a": {"b": 1}}, indent=2)))
        == "not_records"
    )
    # a one-line .json record file is still read as records
    assert sniff_kind(_write(tmp_path / "one.json", json.dumps(INTERACTION))) == "interactions"


def test_the_sample_folder_resolves_to_its_record_files(tmp_path: Path) -> None:
    resolved = resolve_inputs([str(SAMPLE_DIR)], [])
    names = sorted(p.name for _, p in resolved.files)
    assert "manifest.json" in names  # found; sniffing (not the extension) decides to skip it
    assert resolved.empty_folders == 0


def test_an_empty_folder_is_counted_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    resolved = resolve_inputs([str(tmp_path / "empty")], [])
    assert resolved.files == [] and resolved.empty_folders == 1
    with pytest.raises(Exception, match="no input files match"):
        resolve_inputs([str(tmp_path / "missing")], [])


def test_display_name_redacts_every_piece_of_a_file_name() -> None:
    redactor = Redactor(PipelineConfig().redaction)
    shown = display_name(redactor, "jane.doe@example.com_+1-212-555-0100.jsonl")
    assert "jane" not in shown and "212" not in shown and "555" not in shown
    assert shown.endswith(".jsonl")
    assert display_name(redactor, "interactions-week-01.jsonl") == "interactions-week-01.jsonl"


def test_the_input_list_round_trips_and_its_ref_holds_no_path(tmp_path: Path) -> None:
    secret = tmp_path / "jane.doe@example.com_+1-212-555-0100.jsonl"
    _write(secret, json.dumps(INTERACTION) + "\n")
    entries = [
        ("auto", secret.resolve()),
        ("feedback", (SAMPLE_DIR / "feedback-week-01.jsonl").resolve()),
    ]
    ref = write_input_list(tmp_path / "home", entries)
    assert "jane" not in ref and "@" not in ref and "212" not in ref
    assert write_input_list(tmp_path / "home", entries) == ref  # same list, same ref
    assert read_input_list(tmp_path / "home", ref) == entries
    with pytest.raises(InputListError):
        read_input_list(tmp_path / "home", "in-0000000000000000")
    with pytest.raises(InputListError):
        read_input_list(tmp_path / "home", "../../etc/passwd")
    remove_input_list(tmp_path / "home", ref)
    with pytest.raises(InputListError):
        read_input_list(tmp_path / "home", ref)
