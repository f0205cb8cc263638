import json

import pytest

from colonpipe.infer.journal import (
    JournalLockedError,
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
