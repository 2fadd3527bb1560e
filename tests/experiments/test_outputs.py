"""Verified outputs: the digests a record keeps of its files, the record's seal, and the cheap
check (size and modification time first, SHA-256 only when those disagree)."""

import json
import os

import pytest

from linmnist.experiments import outputs
from linmnist.experiments.outputs import change, intact, output_digests, output_problems, seal
from linmnist.experiments.results import read_record, write_record


def made(tmp_path, text="iteration,loss\n0,1.5\n"):
    path = tmp_path / "cell.history.csv"
    path.write_text(text)
    return path, output_digests(tmp_path, [path.name])[path.name]


def test_an_unchanged_file_is_recognised_without_hashing(tmp_path, monkeypatch):
    path, stored = made(tmp_path)
    monkeypatch.setattr(outputs, "file_sha256", lambda p: pytest.fail("hashed"))
    assert change(path, stored) is None


def test_a_file_touched_but_not_changed_is_hashed_and_still_good(tmp_path):
    path, stored = made(tmp_path)
    os.utime(path, ns=(stored["mtime_ns"] + 10**9, stored["mtime_ns"] + 10**9))
    assert change(path, stored) is None


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_text("iteration,loss\n0,9.5\n"), "changed"),  # same size, edited
        (lambda p: p.write_text("iteration,loss\n"), "changed"),  # truncated
        (lambda p: p.write_bytes(b""), "changed"),  # emptied
        (lambda p: p.unlink(), "removed"),
        (lambda p: (p.unlink(), p.mkdir()), "changed"),  # replaced by a directory
    ],
)
def test_an_edited_truncated_emptied_or_removed_file_is_caught(tmp_path, damage, expected):
    path, stored = made(tmp_path)
    damage(path)
    assert change(path, stored) == expected


def test_a_same_size_edit_with_the_old_modification_time_restored_is_not_caught_cheaply(tmp_path):
    """The documented limit of the cheap check: size and mtime both forged pass."""
    path, stored = made(tmp_path)
    path.write_text("iteration,loss\n0,9.5\n")
    os.utime(path, ns=(stored["mtime_ns"], stored["mtime_ns"]))
    assert change(path, stored) is None


def test_a_written_record_is_sealed_and_any_edit_of_it_breaks_the_seal(tmp_path):
    path = tmp_path / "lr0.01_bs10.json"
    write_record(path, {"status": "ok", "seeds": [{"final_test_acc": 0.7722}], "x": float("nan")})
    record = read_record(path)
    assert intact(record) and record["x"] is None
    edited = json.loads(path.read_text().replace("0.7722", "0.8722"))
    assert not intact(edited)
    assert not intact({k: v for k, v in record.items() if k != "seal"})
    assert intact(seal(edited))


def test_output_problems_name_the_record_or_each_changed_file(tmp_path):
    path, stored = made(tmp_path)
    (tmp_path / "other.csv").write_text("a")
    names = [path.name, "other.csv"]
    record = seal({"status": "ok", "outputs": {**output_digests(tmp_path, names)}})
    assert output_problems(record, tmp_path / "c.json", tmp_path, names) == []
    path.write_bytes(b"")
    (tmp_path / "other.csv").unlink()
    problems = output_problems(record, tmp_path / "c.json", tmp_path, names)
    assert problems == [
        f"output changed: {path}",
        f"output removed: {tmp_path / 'other.csv'}",
    ]
    forged = {**record, "status": "failed"}
    assert output_problems(forged, tmp_path / "c.json", tmp_path, names) == [
        f"record changed: {tmp_path / 'c.json'}"
    ]


def test_a_record_without_digests_does_not_vouch_for_its_files(tmp_path):
    path, _ = made(tmp_path)
    record = seal({"status": "ok"})
    assert output_problems(record, tmp_path / "c.json", tmp_path, [path.name]) == [
        f"output not in the record: {path}"
    ]
