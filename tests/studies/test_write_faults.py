"""Writes the machine refuses, on a real small filesystem: a tmpfs this test mounts, filled up or remounted
read-only. The journal, the search outputs, a checkpoint and an export each end in one line naming the file
and the cause (EnvironmentFault, exit code 3), leave no temporary file, keep what was written before, and
the same call succeeds once the cause is gone.

Mounting needs root: elsewhere these tests skip, saying so (CI runs as root, so there they run).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from nas._common.runfiles import STUDY_JOURNAL
from nas.arch.blockstrings import parse_block_strings
from nas.errors import EXIT_ENVIRONMENT, EnvironmentFault, run_reporting
from nas.proxy.checkpoint import load_checkpoint, save_checkpoint
from nas.search.report import OUTPUT_FILES, load_run_study
from nas.search.run import run_search
from nas.studies.storage import open_storage
from tests.postgres import in_ci
from tests.search.test_search import config, fake_evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)
FULL = "No space left on device"
READ_ONLY = "Read-only file system"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 4 MiB tmpfs mounted for this test, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}"
        if in_ci():
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Take every free block of the filesystem (files keep the slack of their last block); returns the ballast."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.strerror == FULL
    finally:
        os.close(fd)
    return ballast


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


def leftovers(folder: Path) -> list[str]:
    """Temporary files, staging folders and locks: what a refused write must not leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".lock"))


def one_fault_line(call: Callable[[], None], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `call` as the `nas` command runs a subcommand; it must end with exit code 3 and one line."""
    assert run_reporting(call) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas: error: cannot "), err
    return err


def search(runs: Path, n_trials: int) -> Callable[[], None]:
    return lambda: run_search(config(runs, n_trials=n_trials), evaluate=fake_evaluate, quiet=True) and None


def finished(runs: Path) -> list:
    return load_run_study(runs / "s").get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_a_refused_journal_append_is_undone_whole(disk: Path):
    storage = open_storage(None, disk / "run")
    study = optuna.create_study(storage=storage, study_name="s")
    journal = disk / "run" / STUDY_JOURNAL
    ballast = fill(disk)
    before = journal.read_bytes()
    # Larger than a block: the first part lands in the journal's last block, the rest finds no room.
    with pytest.raises(EnvironmentFault) as caught:
        study.set_user_attr("notes", "x" * 20_000)
    assert str(caught.value) == (f"cannot write {journal}: {FULL}; free some space, then run the same command "
                                 "again")
    assert journal.read_bytes() == before and leftovers(disk) == []
    ballast.unlink()
    study.set_user_attr("notes", "x" * 20_000)
    assert optuna.load_study(study_name="s", storage=open_storage(None, disk / "run")).user_attrs["notes"] == "x" * 20_000


def test_a_disk_that_fills_during_a_search_ends_it_in_one_line_and_the_same_command_resumes(disk, capsys):
    runs = disk / "runs"
    search(runs, 4)()
    journal_before = (runs / "s" / STUDY_JOURNAL).read_bytes()
    ballast = fill(disk)

    err = one_fault_line(search(runs, 12), capsys)
    assert f"{runs / 's'}/" in err and FULL in err and "free some space, then run the same command again" in err
    assert leftovers(runs) == []
    journal = (runs / "s" / STUDY_JOURNAL).read_bytes()
    assert journal.startswith(journal_before) and journal.endswith(b"\n")
    assert all(isinstance(json.loads(line), dict) for line in journal.splitlines())
    for name in OUTPUT_FILES:  # the old outputs (or complete newer ones), never half a file
        assert (runs / "s" / name).stat().st_size > 0
    assert len(pd.read_csv(runs / "s" / "trials.csv")) >= 4
    json.loads((runs / "s" / "best.json").read_text())
    done_before = len(finished(runs))
    assert 4 <= done_before < 12

    ballast.unlink()
    capsys.readouterr()
    assert run_reporting(search(runs, 12)) == 0
    assert len(finished(runs)) == 12 and (runs / "s" / STUDY_JOURNAL).read_bytes().startswith(journal)
    assert len(pd.read_csv(runs / "s" / "trials.csv")) >= 12


def test_a_read_only_run_folder_refuses_search_and_report_in_one_line(disk, capsys, run_nas):
    runs = disk / "runs"
    search(runs, 3)()
    journal = runs / "s" / STUDY_JOURNAL
    before = {p.name: p.read_bytes() for p in (runs / "s").iterdir()}
    remount(disk, "ro")
    try:
        err = one_fault_line(search(runs, 6), capsys)
        assert f"cannot write {journal}: {READ_ONLY}; make it writable, then run the same command again" in err
        code, _, err = run_nas("report", str(runs / "s"))
        assert code == EXIT_ENVIRONMENT and err.count("\n") == 1
        assert f"cannot write {runs / 's' / 'trials.csv'}: {READ_ONLY}" in err
        assert {p.name: p.read_bytes() for p in (runs / "s").iterdir()} == before
    finally:
        remount(disk, "rw")
    assert run_reporting(search(runs, 6)) == 0
    assert len(finished(runs)) == 6 and journal.read_bytes().startswith(before[STUDY_JOURNAL])


def test_a_checkpoint_on_a_full_disk_keeps_the_old_one(disk):
    spec = parse_block_strings("ds_r1_k3_s1_e1_c8 ir_r1_k3_s2_e2_c16", resolution=32, num_classes=10)
    path = disk / "train" / "checkpoint.safetensors"
    weights = {"w": torch.arange(6.0)}
    save_checkpoint(path, weights, spec)
    before = path.read_bytes()
    ballast = fill(disk)
    with pytest.raises(EnvironmentFault, match=f"cannot write {path}: {FULL}"):
        save_checkpoint(path, {"w": torch.zeros(50_000)}, spec)
    assert path.read_bytes() == before and leftovers(disk) == []
    ballast.unlink()
    save_checkpoint(path, {"w": torch.zeros(50_000)}, spec)
    assert load_checkpoint(path)[0]["w"].shape == (50_000,)


def test_an_export_on_a_full_disk_keeps_the_earlier_files(disk):
    from nas.deploy.export import export_spec

    spec = parse_block_strings("ds_r1_k3_s1_e1_c8 ir_r1_k3_s2_e2_c16", resolution=32, num_classes=10)
    out = disk / "exported"
    export_spec(spec, out, formats="json,blocks,torchscript")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    ballast = fill(disk)
    with pytest.raises(EnvironmentFault) as caught:
        export_spec(spec.replace(num_classes=20), out, formats="json,blocks,torchscript")
    # the file when the OSError names it, else the folder asked for
    assert re.fullmatch(rf"cannot write {re.escape(str(out))}(/[\w.]+)?: {FULL}; free some space, then run the same "
                        "command again", str(caught.value))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and leftovers(disk) == []
    ballast.unlink()
    export_spec(spec.replace(num_classes=20), out, formats="json,blocks,torchscript")
    assert json.loads((out / "spec.json").read_text())["num_classes"] == 20
