"""The journal file under damage: a real search journal cut inside its last record (at several byte offsets),
damaged in the middle, or being written by another process while it is opened."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import TrialState

from nas._common.runfiles import STUDY_JOURNAL
from nas.errors import NasError
from nas.search.report import load_run_study
from nas.search.run import run_search
from nas.studies.storage import PARTIAL_SUFFIX, open_storage
from tests.search.test_search import config, fake_evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]
N_TRIALS = 8
# Where in the last record the file is cut, as a share of it: its first byte, everything but the newline,
# and four seeded random places between.
_RANDOM = random.Random(19)
CUTS = [0.0, 1.0] + [round(_RANDOM.random(), 3) for _ in range(4)]


@pytest.fixture(scope="module")
def search_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 8-trial search (tiny space, stub accuracy): its run folder, study.journal and outputs."""
    runs = tmp_path_factory.mktemp("template")
    run_search(config(runs, n_trials=N_TRIALS), evaluate=fake_evaluate, quiet=True)
    return runs / "s"


def copy_run(search_folder: Path, tmp_path: Path, journal: bytes) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(search_folder, runs / "s")
    (runs / "s" / STUDY_JOURNAL).write_bytes(journal)
    return runs


def last_record(data: bytes) -> tuple[int, int]:
    """(start, end) of the last record: its first byte and its newline."""
    end = len(data) - 1
    assert data[end:] == b"\n"
    return data.rfind(b"\n", 0, end) + 1, end


def trial_facts(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.params, t.values, t.user_attrs) for t in study.get_trials()]


def journal_lines_are_records(path: Path) -> int:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    return len(lines)


@pytest.mark.parametrize("cut", CUTS)
def test_a_cut_last_record_is_moved_aside_and_the_search_resumes(search_folder, tmp_path, caplog, cut):
    data = (search_folder / STUDY_JOURNAL).read_bytes()
    start, end = last_record(data)
    offset = start + 1 + round(cut * (end - start - 1))
    assert start < offset <= end
    runs = copy_run(search_folder, tmp_path, data[:offset])
    journal = runs / "s" / STUDY_JOURNAL
    (tmp_path / "ref.journal").write_bytes(data[:start])  # what the journal held before its last record
    reference = optuna.load_study(study_name="s", storage=open_storage(f"journal:{tmp_path}/ref.journal", tmp_path))

    with caplog.at_level(logging.WARNING, logger="nas.studies.storage"):
        study = load_run_study(runs / "s")  # what `nas report` and the resume open
    warnings = [r.getMessage() for r in caplog.records if r.name == "nas.studies.storage"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(journal) in warnings[0] and PARTIAL_SUFFIX in warnings[0] and f"{offset - start} bytes" in warnings[0]
    # every complete record kept, the cut one moved aside byte for byte (never deleted)
    assert journal.read_bytes() == data[:start]
    assert journal.with_name(STUDY_JOURNAL + PARTIAL_SUFFIX).read_bytes() == data[start:offset] + b"\n"
    assert trial_facts(study) == trial_facts(reference)

    # the same search command resumes: new records start on a fresh line, the budget is exact
    resumed = run_search(config(runs, n_trials=N_TRIALS + 2), evaluate=fake_evaluate, quiet=True)
    finished = resumed.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == N_TRIALS + 2
    assert journal.read_bytes().startswith(data[:start])
    assert journal_lines_are_records(journal) > data[:start].count(b"\n")
    assert not resumed.get_trials(states=(TrialState.RUNNING,))


def test_nas_report_repairs_the_same_way_in_one_line(search_folder, tmp_path):
    data = (search_folder / STUDY_JOURNAL).read_bytes()
    start, end = last_record(data)
    runs = copy_run(search_folder, tmp_path, data[:(start + end) // 2])
    (runs / "s" / "trials.csv").unlink()
    # Its own process, so stderr is what a user sees (no test harness capturing the log).
    done = subprocess.run([sys.executable, "-m", "nas", "report", str(runs / "s")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "its last record was cut" in done.stderr
    assert (runs / "s" / STUDY_JOURNAL).read_bytes() == data[:start]
    assert (runs / "s" / "trials.csv").is_file() and "wrote" in done.stdout


def _glued(lines: list[bytes], k: int) -> list[bytes]:
    """What an append onto a cut line used to leave: half a record with the next one stuck to it."""
    return [*lines[:k], lines[k][: len(lines[k]) // 2] + lines[k + 1], *lines[k + 2:]]


DAMAGE = {
    "cut record with the next glued on": _glued,
    "binary garbage": lambda lines, k: [*lines[:k], b"\x00\x17\x9cgarbage", *lines[k + 1:]],
    "invalid UTF-8": lambda lines, k: [*lines[:k], b'{"op_code": 8, "v": "\xff\xfe"}', *lines[k + 1:]],
    "an empty line": lambda lines, k: [*lines[:k], b"", *lines[k:]],
    "JSON that is no record": lambda lines, k: [*lines[:k], b"[1, 2, 3]", *lines[k + 1:]],
    "an unknown operation": lambda lines, k: [*lines[:k], b'{"op_code": 99, "worker_id": "w"}', *lines[k + 1:]],
    "a record Optuna cannot replay": lambda lines, k: [*lines[:k], b'{"op_code": 8, "worker_id": "w"}', *lines[k + 1:]],
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damage_before_the_last_record_is_refused_naming_file_and_line(search_folder, tmp_path, run_nas, damage):
    lines = (search_folder / STUDY_JOURNAL).read_bytes().split(b"\n")[:-1]
    k = len(lines) // 2
    data = b"\n".join(DAMAGE[damage](lines, k)) + b"\n"
    runs = copy_run(search_folder, tmp_path, data + b'{"op_code": 8, "cut')  # and a cut tail: not repaired
    journal = runs / "s" / STUDY_JOURNAL
    before = journal.read_bytes()

    with pytest.raises(NasError) as caught:
        load_run_study(runs / "s")
    message = str(caught.value)
    assert f"{journal}: line {k + 1} is damaged" in message and "\n" not in message
    with pytest.raises(NasError, match=f"line {k + 1} is damaged"):
        run_search(config(runs, n_trials=N_TRIALS + 2), evaluate=fake_evaluate, quiet=True)
    code, _, err = run_nas("report", str(runs / "s"))
    assert code == 2 and err.count("\n") == 1 and f"line {k + 1} is damaged" in err
    # nothing written: not the journal, not a side file, no lock left behind
    assert journal.read_bytes() == before
    assert sorted(p.name for p in journal.parent.iterdir()) == sorted(p.name for p in search_folder.iterdir())


def test_a_record_being_written_by_another_process_is_waited_for_not_cut(search_folder, tmp_path):
    data = (search_folder / STUDY_JOURNAL).read_bytes()
    start, end = last_record(data)
    record = data[start:end + 1]  # appending a copy of the last record is a valid write
    runs = copy_run(search_folder, tmp_path, data)
    journal = runs / "s" / STUDY_JOURNAL
    lock = JournalFileSymlinkLock(str(journal))
    assert lock.acquire()  # the other writer holds the journal's lock while it appends
    with journal.open("ab") as handle:
        handle.write(record[:10])
    opened: list = []
    reader = threading.Thread(target=lambda: opened.append(load_run_study(runs / "s")))
    reader.start()
    time.sleep(1.0)
    assert reader.is_alive()  # it saw a line without its newline and waits for the lock instead of cutting it
    with journal.open("ab") as handle:
        handle.write(record[10:])
    lock.release()
    reader.join(timeout=30)
    assert opened and journal.read_bytes() == data + record
    assert not journal.with_name(STUDY_JOURNAL + PARTIAL_SUFFIX).exists()


def test_an_append_never_lands_on_a_line_cut_after_the_journal_was_opened(search_folder, tmp_path, caplog):
    data = (search_folder / STUDY_JOURNAL).read_bytes()
    runs = copy_run(search_folder, tmp_path, data)
    journal = runs / "s" / STUDY_JOURNAL
    study = load_run_study(runs / "s")
    with journal.open("ab") as handle:  # another process died in the middle of its append
        handle.write(b'{"op_code":8,"worker_id":"gone","trial_id":0,"user_at')
    with caplog.at_level(logging.WARNING, logger="nas.studies.storage"):
        study.set_user_attr("note", "written after the cut")
    assert "its last record was cut" in caplog.text
    assert journal_lines_are_records(journal) == data.count(b"\n") + 1
    assert load_run_study(runs / "s").user_attrs["note"] == "written after the cut"
