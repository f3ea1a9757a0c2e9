"""The grid study end to end on a tiny grid: real proxy training on Fashion-MNIST, successive halving, the
paper's point beside the grid, a point that does not train (reported, retried, never chosen), the files,
resuming an interrupted grid and refusing a changed one."""

from __future__ import annotations

import csv

import optuna
import pytest

import scaling.grid_study
from nas._common.runfiles import GRID_JOURNAL
from nas.arch.spec import Spec, StageSpec, load_spec
from nas.proxy.presets import PRESETS, ProxyPreset
from nas.studies.storage import open_storage
from scaling.grid import grid_points
from scaling.grid_study import GridSettings, open_grid_study
from scaling.halving import make_rungs
from scaling.pipeline import GRID_STUDY

# A small base so that each point trains in about a second.
SMALL_BASE = Spec(
    stages=(StageSpec("ds", 1, 3, 1, 1, 8, 0.25), StageSpec("mbconv", 1, 3, 2, 3, 16, 0.25),
            StageSpec("mbconv", 1, 5, 2, 3, 24, 0.25)),
    stem_channels=8, head_channels=64, name="small",
)
# A proxy that learns in a few dozen steps at 16 px, so that the health check sees real training.
QUICK = ProxyPreset("quick", epochs=1, batch_size=32, resolution=16, lr_per_256=0.064)
# Step 0.5, tolerance 0.25 keeps three points (depth x2, width x1.5, resolution x1.5); the paper's point
# (1.2, 1.1, 1.15) is trained beside them. Rung 0: 2,560 images; rung 1 (the best two and the paper's): 2,560
# images for two epochs under two seeds.
TINY_GRID = ("--proxy", "quick", "--grid-step", "0.5", "--tolerance", "0.25", "--rung-images", "2560,2560",
             "--final-seeds", "2")
PAPER = ("1.2", "1.1", "1.15")


@pytest.fixture(autouse=True)
def quick_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, "quick", QUICK)


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


def test_tiny_grid_end_to_end_with_a_point_that_does_not_train(run_nas, tmp_path, base_file, monkeypatch):
    """The resolution x1.5 point is made unable to learn (learning rate 0): its run and its retry under
    another seed fail the health check, it is reported as failed and not chosen; the rest halve as designed."""
    real_train = scaling.grid_study.train

    def frozen_at_24px(spec, data, preset, **kwargs):
        if preset.resolution == 24:
            preset = preset.with_changes(lr_per_256=1e-12)
        return real_train(spec, data, preset, **kwargs)

    monkeypatch.setattr(scaling.grid_study, "train", frozen_at_24px)
    runs = tmp_path / "runs"
    code, out, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    folder = runs / "scale-small" / "family"
    grid = {(row["alpha"], row["beta"], row["gamma"]): row for row in _rows(folder / "grid.csv")}
    assert set(grid) == {("1.0", "1.0", "1.5"), ("1.0", "1.5", "1.0"), ("2.0", "1.0", "1.0"), PAPER}
    failed = grid[("1.0", "1.0", "1.5")]
    assert failed["state"] == "failed" and failed["chosen"] == "False" and failed["rung0_acc"] == ""
    trials = _trials(runs / "scale-small")
    runs_of_failed = [t for t in trials if t.params["point"] == "a1_b1_g1.5"]
    assert len(runs_of_failed) == 2 and all(t.state.name == "FAIL" for t in runs_of_failed)
    assert all("did not train" in t.user_attrs["reason"] for t in runs_of_failed)
    assert {t.params["seed"] for t in runs_of_failed} == {0, 1000}  # retried under another seed
    # Rung 1 trains the two surviving grid points and the paper's point, each under two seeds.
    finals = [t for t in trials if t.params["rung"] == 1]
    assert len(finals) == 6 and all(t.state.name == "COMPLETE" for t in finals)
    assert grid[PAPER]["reference"] == "True" and grid[PAPER]["chosen"] == "False"
    for key in (("1.0", "1.5", "1.0"), ("2.0", "1.0", "1.0")):
        row = grid[key]
        assert row["state"] == "complete" and len(row["final_seeds"].split()) == 2
        seeds = [float(v) for v in row["final_seeds"].split()]
        assert float(row["rung1_acc"]) == pytest.approx(sum(seeds) / 2, abs=1e-5)
    chosen = [row for row in grid.values() if row["chosen"] == "True"]
    assert len(chosen) == 1
    best = max((row for key, row in grid.items() if key != PAPER and row["state"] == "complete"),
               key=lambda row: float(row["rung1_acc"]))
    assert chosen[0] is best
    # gamma scales the proxy resolution (the quick preset trains at 16 pixels).
    assert sorted(int(row["proxy_resolution"]) for row in grid.values()) == [16, 16, 18, 24]
    alpha, beta, gamma = (float(best[key]) for key in ("alpha", "beta", "gamma"))
    assert f"alpha={alpha:g} beta={beta:g} gamma={gamma:g}" in out and "seed spread" in out
    summary = (folder / "summary.md").read_text()
    assert "failed to train and cannot win" in summary and "paper's point" in summary and "seed spread" in summary
    family = _rows(folder / "family.csv")
    emitted = [phi for phi in range(8) if alpha**phi <= 64]
    assert [row["name"] for row in family] == [f"b{phi}" for phi in emitted]
    b2 = load_spec(folder / "b2.json")
    assert b2.resolution == round(SMALL_BASE.resolution * gamma**2) and b2.dropout == 0.3
    assert (folder / "scaling.png").stat().st_size > 1000

    # Running it again resumes the finished study: nothing is trained twice, same choice.
    count = len(trials)
    code, again, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    assert len(_trials(runs / "scale-small")) == count
    assert {(r["alpha"], r["beta"], r["gamma"]): r for r in _rows(folder / "grid.csv")} == grid


def test_interrupted_grid_resumes_and_trains_the_interrupted_run(run_nas, tmp_path, base_file, monkeypatch):
    runs = tmp_path / "runs"
    real_train = scaling.grid_study.train
    calls = []

    def interrupt_second_run(*args, **kwargs):
        calls.append(args[2].resolution)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(scaling.grid_study, "train", interrupt_second_run)
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 130 and "interrupted" in err
    states = sorted(t.state.name for t in _trials(runs / "scale-small"))
    assert states.count("COMPLETE") == 1 and states.count("FAIL") == 1
    assert not (runs / "scale-small" / "family" / "grid.csv").exists()

    monkeypatch.setattr(scaling.grid_study, "train", real_train)
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(runs), *TINY_GRID)
    assert code == 0, err
    trials = _trials(runs / "scale-small")
    first = [t for t in trials if t.number == 0][0]
    again = [t for t in trials if t.params == first.params]
    assert len(again) == 1  # the finished run was not trained again
    stale = [t for t in trials if t.user_attrs.get("fail_kind") == "stale"]
    assert len(stale) == 1 and any(t.params == stale[0].params and t.state.name == "COMPLETE" for t in trials)
    assert all(row["state"] in ("complete", "eliminated after rung 0")
               for row in _rows(runs / "scale-small" / "family" / "grid.csv"))


def test_a_changed_grid_is_refused_for_an_existing_study(run_nas, tmp_path, base_file):
    run_dir = tmp_path / "runs" / "scale-small"
    run_dir.mkdir(parents=True)
    points = grid_points(SMALL_BASE, 0.5, 0.25)
    settings = GridSettings(0.5, 0.25, "nominal", "ceil", "fashion-mnist", QUICK, seed=0,
                            rungs=make_rungs((2560, 2560), 2))
    storage = open_storage(str(run_dir / GRID_JOURNAL), run_dir)
    open_grid_study(storage, GRID_STUDY, SMALL_BASE, points, settings)
    # Same options: the stored study is accepted; another seed is another grid, refused before training.
    assert open_grid_study(storage, GRID_STUDY, SMALL_BASE, points, settings).study_name == GRID_STUDY
    code, _, err = run_nas("scale", "--base", str(base_file), "--runs", str(tmp_path / "runs"), *TINY_GRID,
                           "--seed", "1")
    assert code == 2 and "another --study" in err
    assert _trials(run_dir) == []
