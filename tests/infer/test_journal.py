import json

import pytest

from colonpipe.infer.journal import (
    JournalLockedError,
    JournalStateError,
    JournalWriter,
    journal_path,
    prepare_journal_dir,
    read_journal,
    read_journals,
)


def test_append_and_read_back(tmp_path):
    path = journal_path(tmp_path, 0, 2)
    with JournalWriter(path) as j:
        j.append([{"index": 0, "prediction": "polyp"}, {"index": 2, "error": "image: bad"}])
        j.append([])
        j.append([{"index": 4, "prediction": "ünïcode {<1><2><3><4>}"}])
    done = read_journal(path)
    assert done == {
        0: {"index": 0, "prediction": "polyp"},
        2: {"index": 2, "error": "image: bad"},
        4: {"index": 4, "prediction": "ünïcode {<1><2><3><4>}"},
    }


def test_torn_last_line_is_ignored_then_repaired(tmp_path):
    path = journal_path(tmp_path, 0, 1)
    with JournalWriter(path) as j:
        j.append([{"index": 0, "prediction": "a"}, {"index": 1, "prediction": "b"}])
    # a kill mid-write: a complete JSON object without its newline, and a half object
    for torn in (b'{"index": 2, "prediction": "c"}', b'{"index": 2, "predi'):
        clean = path.read_bytes()
        path.write_bytes(clean + torn)
        assert set(read_journal(path)) == {0, 1}  # the unterminated tail never counts as done
        with JournalWriter(path) as j:  # reopening truncates the tail before appending
            j.append([{"index": 2, "prediction": "c"}])
        assert path.read_bytes() == clean + b'{"index": 2, "prediction": "c"}\n'
        assert set(read_journal(path)) == {0, 1, 2}
        path.write_bytes(clean)


def test_garbled_middle_line_is_skipped(tmp_path):
    path = tmp_path / "shard-000-of-001.jsonl"
    path.write_bytes(b'{"index": 0, "prediction": "a"}\n\x00garbage\n{"nope": 1}\n{"index": 3, "error": "x"}\n')
    assert set(read_journal(path)) == {0, 3}


def test_union_over_shard_files(tmp_path):
    with JournalWriter(journal_path(tmp_path, 0, 2)) as a, JournalWriter(journal_path(tmp_path, 1, 2)) as b:
        a.append([{"index": 0, "prediction": "x"}])
        b.append([{"index": 1, "prediction": "y"}])
    with JournalWriter(journal_path(tmp_path, 0, 3)) as c:  # an older run with another shard count
        c.append([{"index": 3, "prediction": "z"}])
    assert sorted(read_journals(tmp_path)) == [0, 1, 3]


def test_second_writer_on_same_journal_is_refused(tmp_path):
    path = journal_path(tmp_path, 0, 1)
    with JournalWriter(path):
        with pytest.raises(JournalLockedError, match="another worker"):
            JournalWriter(path)
    JournalWriter(path).close()  # free again once the first one closed


def test_fingerprint_keeps_or_wipes(tmp_path):
    jdir = tmp_path / ".shards"
    assert prepare_journal_dir(jdir, {"model": "a"}) is False
    with JournalWriter(journal_path(jdir, 0, 1)) as j:
        j.append([{"index": 0, "prediction": "x"}])
    assert prepare_journal_dir(jdir, {"model": "a"}) is True
    assert set(read_journals(jdir)) == {0}
    assert prepare_journal_dir(jdir, {"model": "b"}) is False  # model changed: start over
    assert read_journals(jdir) == {}
    assert json.loads((jdir / "fingerprint.json").read_text()) == {"model": "b"}


def _two_shards(jdir, entries_a, entries_b):
    with JournalWriter(journal_path(jdir, 0, 2)) as a, JournalWriter(journal_path(jdir, 1, 2)) as b:
        a.append(entries_a)
        b.append(entries_b)


def test_resume_drops_errors_and_predictions_whose_image_changed(tmp_path):
    jdir = tmp_path / ".shards"
    fp = {"model": "a", "images": ["10:1", "20:1", "30:1", "missing"]}
    assert prepare_journal_dir(jdir, fp) is False
    _two_shards(jdir, [{"index": 0, "prediction": "p0"}, {"index": 2, "prediction": "p2"}],
                [{"index": 1, "prediction": "p1"}, {"index": 3, "error": "image: missing"}])
    # position 2's image was replaced (new mtime); position 3's missing image was added
    assert prepare_journal_dir(jdir, {"model": "a", "images": ["10:1", "20:1", "30:2", "5:9"]}) is True
    assert read_journals(jdir) == {0: {"index": 0, "prediction": "p0"}, 1: {"index": 1, "prediction": "p1"}}
    # an unchanged rerun keeps every prediction and still retries errors
    with JournalWriter(journal_path(jdir, 0, 2)) as a:
        a.append([{"index": 2, "prediction": "p2'"}, {"index": 3, "error": "still bad"}])
    before = journal_path(jdir, 1, 2).read_bytes()
    assert prepare_journal_dir(jdir, {"model": "a", "images": ["10:1", "20:1", "30:2", "5:9"]}) is True
    assert set(read_journals(jdir)) == {0, 1, 2}
    assert journal_path(jdir, 1, 2).read_bytes() == before  # untouched files are not rewritten


def test_compaction_keeps_one_entry_per_position_and_removes_empty_journals(tmp_path):
    jdir = tmp_path / ".shards"
    prepare_journal_dir(jdir, {"model": "a"})
    with JournalWriter(journal_path(jdir, 0, 1)) as j:  # an older single-shard run
        j.append([{"index": 0, "prediction": "old-run"}, {"index": 1, "error": "x"}])
    with JournalWriter(journal_path(jdir, 0, 2)) as j:
        j.append([{"index": 0, "prediction": "dup"}])
    with JournalWriter(journal_path(jdir, 1, 2)) as j:
        j.append([{"index": 1, "error": "y"}])
    assert prepare_journal_dir(jdir, {"model": "a"}) is True
    assert read_journals(jdir) == {0: {"index": 0, "prediction": "old-run"}}
    assert sorted(p.name for p in jdir.glob("shard-*.jsonl")) == ["shard-000-of-001.jsonl"]


@pytest.mark.parametrize("damage", ["garbled", "not-an-object", "unreadable", "missing"])
def test_an_unreadable_fingerprint_keeps_every_prediction(tmp_path, damage):
    jdir = tmp_path / ".shards"
    prepare_journal_dir(jdir, {"model": "a"})
    _two_shards(jdir, [{"index": 0, "prediction": "p0"}], [{"index": 1, "prediction": "p1"}])
    journals = {p.name: p.read_bytes() for p in jdir.glob("shard-*.jsonl")}
    stamp = jdir / "fingerprint.json"
    saved = stamp.read_bytes()
    if damage == "garbled":
        stamp.write_bytes(saved[: len(saved) // 2])
    elif damage == "not-an-object":
        stamp.write_text("[1, 2]")
    elif damage == "unreadable":  # an I/O error (a folder in its place: root ignores chmod)
        stamp.unlink()
        stamp.mkdir()
    else:
        stamp.unlink()
    with pytest.raises(JournalStateError, match=r"fingerprint.json: .*the 2 records journaled in .* are kept untouched"):
        prepare_journal_dir(jdir, {"model": "a"})
    with pytest.raises(JournalStateError):  # even for another model: the difference is not known
        prepare_journal_dir(jdir, {"model": "b"})
    assert {p.name: p.read_bytes() for p in jdir.glob("shard-*.jsonl")} == journals
    if stamp.is_dir():
        stamp.rmdir()
    stamp.write_bytes(saved)  # restored: the run resumes with everything it had
    assert prepare_journal_dir(jdir, {"model": "a"}) is True and set(read_journals(jdir)) == {0, 1}


def test_a_missing_fingerprint_without_journals_is_a_fresh_start(tmp_path):
    jdir = tmp_path / ".shards"
    jdir.mkdir()
    (jdir / "shard-000.log").write_text("an old log\n")
    assert prepare_journal_dir(jdir, {"model": "a"}) is False
    assert json.loads((jdir / "fingerprint.json").read_text()) == {"model": "a"}
