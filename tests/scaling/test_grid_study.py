"""The grid study end to end on a tiny grid: real proxy training (the 'tiny' preset on Fashion-MNIST),
the choice of coefficients, the files, resuming an interrupted grid and refusing a changed one."""

from __future__ import annotations

import csv

import optuna
import pytest

import scaling.grid_study
from nas._common.runfiles import GRID_JOURNAL
from nas.arch.spec import Spec, StageSpec, load_spec
from nas.proxy.presets import get_preset
from nas.studies.storage import open_storage
from scaling.grid import grid_points
from scaling.grid_study import GridSettings, open_grid_study
from scaling.pipeline import GRID_STUDY

# A small base so that each tiny-preset point trains in about a second.
SMALL_BASE = Spec(
    stages=(StageSpec("ds", 1, 3, 1, 1, 8, 0.25), StageSpec("mbconv", 1, 3, 2, 3, 16, 0.25),
            StageSpec("mbconv", 1, 5, 2, 3, 24, 0.25)),
    stem_channels=8, head_channels=64, name="small",
)
# Step 0.5, tolerance 0.25 keeps three points: depth x2, width x1.5, resolution x1.5.
TINY_GRID = ("--proxy", "tiny", "--grid-step", "0.5", "--tolerance", "0.25")


@pytest.fixture
def base_file(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(SMALL_BASE.to_json())
    return path


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _trials(run_dir):
    storage = open_storage(str(run_dir / GRID_JOURNAL), run_dir)
    return optuna.load_study(study_name=GRID_STUDY, storage=storage).get_trials()


def test_tiny_grid_end_to_end(run_nas, tmp_path, base_file):
    runs = tmp_path / "runs"
    code, out, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    folder = runs / "scale-small" / "family"
    grid = _rows(folder / "grid.csv")
    assert {(row["alpha"], row["beta"], row["gamma"]) for row in grid} == {
        ("1.0", "1.0", "1.5"), ("1.0", "1.5", "1.0"), ("2.0", "1.0", "1.0")}
    assert all(row["state"] == "complete" and 0.0 <= float(row["val_acc"]) <= 1.0 for row in grid)
    # gamma scales the proxy resolution (the tiny preset trains at 16 pixels).
    assert sorted(int(row["proxy_resolution"]) for row in grid) == [16, 16, 24]
    # The chosen point is the most accurate, ties to the lower actual FLOPs ratio.
    best = min(grid, key=lambda row: (-float(row["val_acc"]), float(row["flops_ratio"])))
    assert [row["chosen"] for row in grid].count("True") == 1 and best["chosen"] == "True"
    # The grid's accuracies are the study's trial values.
    trials = _trials(runs / "scale-small")
    assert sorted(t.value for t in trials) == sorted(float(row["val_acc"]) for row in grid)
    alpha, beta, gamma = (float(best[key]) for key in ("alpha", "beta", "gamma"))
    assert f"alpha={alpha:g} beta={beta:g} gamma={gamma:g}" in out
    family = _rows(folder / "family.csv")
    # Members past the spec's 64 blocks a stage (alpha = 2 from one-block stages at phi = 7) are left out.
    emitted = [phi for phi in range(8) if alpha**phi <= 64]
    assert [row["name"] for row in family] == [f"b{phi}" for phi in emitted]
    assert ("left out b7" in out) == (7 not in emitted)
    b2 = load_spec(folder / "b2.json")
    assert b2.resolution == round(SMALL_BASE.resolution * gamma**2) and b2.dropout == 0.3
    assert (folder / "scaling.png").stat().st_size > 1000

    # Running it again resumes the finished study: nothing is trained twice, same choice.
    code, again, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    assert len(_trials(runs / "scale-small")) == 3 and _rows(folder / "grid.csv") == grid


def test_interrupted_grid_resumes_and_trains_the_interrupted_point(run_nas, tmp_path, base_file, monkeypatch):
    runs = tmp_path / "runs"
    real_train = scaling.grid_study.train
    calls = []

    def interrupt_second_point(*args, **kwargs):
        calls.append(args[2].resolution)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(scaling.grid_study, "train", interrupt_second_point)
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 130 and "interrupted" in err
    states = sorted(t.state.name for t in _trials(runs / "scale-small"))
    assert states == ["COMPLETE", "FAIL"]
    assert not (runs / "scale-small" / "family" / "grid.csv").exists()

    monkeypatch.setattr(scaling.grid_study, "train", real_train)
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    trials = _trials(runs / "scale-small")
    completed = {t.params["point"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(trials) == 4 and len(completed) == 3  # the first point was not trained again
    assert all(row["state"] == "complete" for row in _rows(runs / "scale-small" / "family" / "grid.csv"))


def test_a_changed_grid_is_refused_for_an_existing_study(run_nas, tmp_path, base_file):
    run_dir = tmp_path / "runs" / "scale-small"
    run_dir.mkdir(parents=True)
    points = grid_points(SMALL_BASE, 0.5, 0.25)
    settings = GridSettings(0.5, 0.25, "nominal", "ceil", "fashion-mnist", get_preset("tiny"), seed=0)
    storage = open_storage(str(run_dir / GRID_JOURNAL), run_dir)
    open_grid_study(storage, GRID_STUDY, SMALL_BASE, points, settings)
    # Same options: the stored study is accepted; another seed is another grid, refused before training.
    assert open_grid_study(storage, GRID_STUDY, SMALL_BASE, points, settings).study_name == GRID_STUDY
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(tmp_path / "runs"), *TINY_GRID,
                           "--seed", "1")
    assert code == 2 and "another --study" in err
    assert _trials(run_dir) == []
