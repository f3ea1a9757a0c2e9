"""The search core with a plain accuracy source: budget, hard cap, selection, outputs, resume, seeding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from nas.arch.cost import count_flops, count_params
from nas.arch.space import decode, load_space
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.search.config import SearchConfig
from nas.search.pareto import pareto_front
from nas.search.report import OUTPUT_FILES, load_run_study
from nas.search.reward import Reward
from nas.search.run import run_search

optuna.logging.set_verbosity(optuna.logging.WARNING)
TINY = dict(strategy="standalone", space="tiny", target_flops=60_000_000, population=4)


class Epoch:
    def __init__(self, epoch: int, val_acc: float) -> None:
        self.epoch, self.val_acc = epoch, val_acc


def fake_accuracy(spec: Spec) -> float:
    """A deterministic stand-in for the proxy: bigger networks score higher, saturating below 1."""
    return round(1 - 1 / (1 + count_params(spec) / 50_000), 6)


def fake_evaluate(spec: Spec, on_epoch) -> float:
    accuracy = fake_accuracy(spec)
    on_epoch(Epoch(1, accuracy / 2))
    on_epoch(Epoch(2, accuracy))
    return accuracy


def config(tmp_path: Path, **changes) -> SearchConfig:
    return SearchConfig(**{**TINY, "runs_dir": str(tmp_path), "study": "s", **changes})


def finished(study: optuna.Study) -> list:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def test_search_budget_cap_selection_and_outputs(tmp_path, caplog):
    cfg = config(tmp_path, n_trials=12)
    caplog.set_level("INFO", logger="nas")
    study = run_search(cfg, evaluate=fake_evaluate)
    trials = study.get_trials()
    assert len(trials) == 12 and len(finished(study)) == 12
    reward = Reward.soft(60_000_000)
    space = load_space("tiny")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and complete, "the tiny space at 60M should produce both"
    for t in pruned:  # not trained: FLOPs recorded, reason given, no accuracy
        assert t.user_attrs["flops"] > 120_000_000 and "hard cap" in t.user_attrs["reason"]
        assert "accuracy" not in t.user_attrs and "val_acc_history" not in t.user_attrs
    for t in complete:
        spec = decode(space, t.params)
        assert t.user_attrs["flops"] == count_flops(spec) <= 120_000_000
        assert t.values == [pytest.approx(fake_accuracy(spec)), count_flops(spec)]
        assert t.user_attrs["reward"] == pytest.approx(reward(fake_accuracy(spec), count_flops(spec)))
        assert t.user_attrs["val_acc_history"] == pytest.approx([fake_accuracy(spec) / 2, fake_accuracy(spec)])
        assert Spec.from_dict(t.user_attrs["spec"]) == spec
    # one progress line per finished trial, logged (the nas command shows them on stderr)
    lines = [r.getMessage() for r in caplog.records if r.name == "nas.search.run"]
    lines = [line for line in lines if line.startswith("trial")]
    assert len(lines) == 12 and all("M" in line for line in lines)
    assert sum("reward" in line for line in lines) == len(complete)

    run_dir = tmp_path / "s"
    for name in OUTPUT_FILES:
        assert (run_dir / name).stat().st_size > 0
    table = pd.read_csv(run_dir / "trials.csv")
    assert list(table["number"]) == list(range(12))
    assert (table["state"] == "PRUNED").sum() == len(pruned)
    assert table.loc[table["state"] == "PRUNED", "reason"].str.contains("hard cap").all()
    best = json.loads((run_dir / "best.json").read_text())
    top = max(complete, key=lambda t: t.user_attrs["reward"])
    assert best["trial"] == top.number and best["reward"] == pytest.approx(top.user_attrs["reward"])
    assert Spec.from_dict(best["spec"]) == decode(space, top.params)
    assert best["params"] == count_params(Spec.from_dict(best["spec"]))
    assert {"spec", "reward", "accuracy", "flops", "params", "trial", "study", "seed", "dataset", "proxy",
            "space"} <= set(best)
    front = pd.read_csv(run_dir / "pareto.csv")
    points = [(t.user_attrs["accuracy"], t.user_attrs["flops"]) for t in complete]
    assert sorted(front["number"]) == sorted(complete[i].number for i in pareto_front(points))
    assert (run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Trial {top.number}" in (run_dir / "summary.md").read_text()


def test_resume_tops_up_and_continues_the_sequence(tmp_path):
    first = run_search(config(tmp_path, n_trials=6, sampler="random"), evaluate=fake_evaluate, quiet=True)
    before = [t.params for t in first.get_trials()]
    again = run_search(config(tmp_path, n_trials=6, sampler="random"), evaluate=fake_evaluate, quiet=True)
    assert [t.params for t in again.get_trials()] == before  # nothing left to do
    more = run_search(config(tmp_path, n_trials=9, sampler="random"), evaluate=fake_evaluate, quiet=True)
    trials = more.get_trials()
    assert len(finished(more)) == 9 and [t.params for t in trials[:6]] == before
    # a resumed run must not replay the fresh run's sampler sequence
    assert all(t.params not in before for t in trials[6:])


def test_resume_with_other_settings_is_refused_and_leaves_the_study(tmp_path):
    run_search(config(tmp_path, n_trials=3), evaluate=fake_evaluate, quiet=True)
    journal = (tmp_path / "s" / "study.journal").read_bytes()
    with pytest.raises(NasError, match="target_flops"):
        run_search(config(tmp_path, n_trials=3, target_flops=70_000_000), evaluate=fake_evaluate, quiet=True)
    assert (tmp_path / "s" / "study.journal").read_bytes() == journal


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_same_seed_same_architectures_in_the_same_order(tmp_path, sampler):
    runs = []
    for folder in ("a", "b"):
        study = run_search(config(tmp_path / folder, n_trials=8, sampler=sampler, seed=3),
                           evaluate=fake_evaluate, quiet=True)
        runs.append([t.params for t in study.get_trials()])
    assert runs[0] == runs[1]
    other = run_search(config(tmp_path / "c", n_trials=8, sampler=sampler, seed=4), evaluate=fake_evaluate,
                       quiet=True)
    assert [t.params for t in other.get_trials()] != runs[0]


def test_failures_inside_trials_are_recorded_and_the_study_goes_on(tmp_path):
    from nas.proxy.trainer import TrainingDiverged

    def flaky(spec: Spec, on_epoch) -> float:
        first = spec.stages[0]
        if (first.block, first.kernel, first.repeats) == ("conv", 3, 1):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory (simulated out of memory)")
        if (first.block, first.kernel, first.repeats) == ("ds", 5, 1):
            return math.nan
        if (first.block, first.expand, first.repeats) == ("mbconv", 3, 1):
            raise TrainingDiverged(epoch=1, step=7, loss=math.inf)
        if (first.block, first.kernel, first.repeats) == ("ds", 3, 2):
            raise NasError("cannot build: simulated invalid block")
        return fake_evaluate(spec, on_epoch)

    # seed 4: the sampled sequence hits each of the four failure kinds at least once
    study = run_search(config(tmp_path, n_trials=10, sampler="random", target_flops=400_000_000, seed=4),
                       evaluate=flaky, quiet=True)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(finished(study)) == 10 and failed
    table = pd.read_csv(tmp_path / "s" / "trials.csv")
    reasons = table.loc[table["state"] == "FAIL", "reason"]
    kinds = ["out of memory", "not in \\[0, 1\\]", "TrainingDiverged: training diverged", "cannot build"]
    assert reasons.str.contains("|".join(kinds)).all()
    assert all(reasons.str.contains(kind).any() for kind in kinds), list(reasons)
    assert (table.loc[table["state"] == "FAIL", "fail_kind"] == "error").all()


def test_enqueue_b0_runs_it_first_and_reports_it(tmp_path):
    cfg = SearchConfig(strategy="standalone", runs_dir=str(tmp_path), study="m", n_trials=3, enqueue=("b0",),
                       sampler="random")
    study = run_search(cfg, evaluate=fake_evaluate, quiet=True)
    first = study.get_trials()[0]
    assert first.user_attrs["params"] == 5_288_548 and first.user_attrs["enqueued"] == "b0"
    assert first.user_attrs["arch"] == "D31 M632 M652 M633 M653 M654 M631"
    assert "Against EfficientNet-B0" in (tmp_path / "m" / "summary.md").read_text()
    # resuming does not enqueue B0 a second time
    study = run_search(cfg.__class__(**{**cfg.__dict__, "n_trials": 4}), evaluate=fake_evaluate, quiet=True)
    assert sum(t.user_attrs.get("params") == 5_288_548 for t in study.get_trials()) == 1


def test_report_regenerates_the_outputs(tmp_path, run_nas):
    run_search(config(tmp_path, n_trials=5), evaluate=fake_evaluate, quiet=True)
    run_dir = tmp_path / "s"
    before = {name: (run_dir / name).read_bytes() for name in ("trials.csv", "pareto.csv", "best.json")}
    for name in OUTPUT_FILES:
        (run_dir / name).unlink()
    code, out, err = run_nas("report", str(run_dir))
    assert code == 0, err
    for name in OUTPUT_FILES:
        assert (run_dir / name).is_file() and str(run_dir / name) in out
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert len(load_run_study(run_dir).get_trials()) == 5


def test_report_of_a_folder_without_a_study(tmp_path, run_nas):
    code, _, err = run_nas("report", str(tmp_path))
    assert code == 2 and "not a search run folder" in err and err.count("\n") == 1


def test_tiny_search_end_to_end_with_the_real_proxy_and_resume(tmp_path, run_nas):
    """The shipped command: the real trainer ('tiny' preset) on Fashion-MNIST, then a resume that tops up."""
    pytest.importorskip("nas.proxy.trainer")
    from nas.proxy.data import FASHION_MNIST_DIR

    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    argv = ["search", "--strategy", "standalone", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M",
            "--population", "2",
            "--study", "e2e", "--runs-dir", str(tmp_path), "--seed", "1"]
    code, out, err = run_nas(*argv, "--n-trials", "2")
    assert code == 0, err
    assert sum(line.startswith("trial") for line in err.splitlines()) == 2
    run_dir = tmp_path / "e2e"
    for name in OUTPUT_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    study = load_run_study(run_dir)
    trained = [t for t in study.get_trials() if "accuracy" in t.user_attrs]
    for trial in trained:  # real training: one validation accuracy per epoch of the 'tiny' preset
        assert len(trial.user_attrs["val_acc_history"]) == 2
        assert trial.user_attrs["accuracy"] == trial.user_attrs["val_acc_history"][-1]
    first = [t.params for t in study.get_trials()]

    code, out, err = run_nas(*argv, "--n-trials", "3")  # the same command, a larger budget: resumes
    assert code == 0, err
    study = load_run_study(run_dir)
    assert len(finished(study)) == 3 and [t.params for t in study.get_trials()[:2]] == first
    assert len(pd.read_csv(run_dir / "trials.csv")) == 3
    best = json.loads((run_dir / "best.json").read_text())
    assert best["dataset"] == "fashion-mnist" and best["proxy"] == "tiny" and best["space"] == "tiny"


def test_proxy_changes_train_the_candidates_and_resume_however_they_are_typed(tmp_path, run_nas):
    """--proxy-change reaches the real trainer (one epoch instead of the tiny preset's two), is stored in a
    canonical form (the same recipe typed another way resumes), and the outputs name it."""
    pytest.importorskip("nas.proxy.trainer")
    from nas.proxy.data import FASHION_MNIST_DIR

    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    argv = ["search", "--strategy", "standalone", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M",
            "--population", "2", "--study", "changed", "--runs-dir", str(tmp_path)]
    code, out, err = run_nas(*argv, "--n-trials", "2", "--proxy-change", "flip=False",
                             "--proxy-change", "epochs=1")
    assert code == 0, err
    assert "proxy tiny with epochs=1, flip=false" in out
    trained = [t for t in load_run_study(tmp_path / "changed").get_trials() if "accuracy" in t.user_attrs]
    assert trained and all(len(t.user_attrs["val_acc_history"]) == 1 for t in trained)
    code, _, err = run_nas(*argv, "--n-trials", "3", "--proxy-change", "epochs=1", "--proxy-change", "flip=false")
    assert code == 0, err
    assert len(finished(load_run_study(tmp_path / "changed"))) == 3
    best = json.loads((tmp_path / "changed" / "best.json").read_text())
    assert best["proxy"] == "tiny" and best["proxy_changes"] == ["epochs=1", "flip=false"]
    code, _, err = run_nas(*argv, "--n-trials", "4")  # the preset unchanged: another study
    assert code == 2 and "proxy_changes" in err


def test_proxy_changes_are_checked_against_the_preset_and_stored_canonically():
    changed = SearchConfig(proxy_changes=("flip=false", "crop_padding=0.125", "flip=True"))
    assert changed.proxy_changes == ("crop_padding=0.125", "flip=true")  # sorted, the last of a field kept
    assert changed.proxy_field_changes == {"crop_padding": 0.125, "flip": True}
    assert changed.identity()["proxy_changes"] == ["crop_padding=0.125", "flip=true"]
    assert SearchConfig().identity()["proxy_changes"] == []
    # one recipe, one identity: an int for a float field, and a change to the preset's own value
    assert SearchConfig(proxy_changes=("crop_padding=0",)).proxy_changes == ("crop_padding=0.0",)
    assert SearchConfig(proxy_changes=("flip=false", "images=35840")).proxy_changes == ()
    for wrong, message in (("init=fan-in", "init must be one of"), ("crop_padding=inf", "crop_padding"),
                           ("label_smoothing=5", "label_smoothing"), ("bn_momentum=nan", "bn_momentum")):
        with pytest.raises(NasError, match=message):  # refused before a study exists, not in every trial
            SearchConfig(proxy_changes=(wrong,))
    with pytest.raises(NasError, match="list of FIELD=VALUE"):
        SearchConfig(proxy_changes="flip=false")
    with pytest.raises(NasError, match="batch_size must be of type int"):
        SearchConfig(proxy_changes=("batch_size=1.5",))


def test_every_named_alternative_has_its_implementation():
    from nas.search.config import SAMPLERS, STRATEGIES
    from nas.search.estimators import ESTIMATORS
    from nas.search.samplers import SAMPLER_FACTORIES, make_sampler

    assert tuple(SAMPLER_FACTORIES) == SAMPLERS and tuple(ESTIMATORS) == tuple(STRATEGIES)
    for name in SAMPLERS:
        assert make_sampler(name, 0, 4) is not None
    with pytest.raises(NasError, match="unknown sampler"):
        make_sampler("grid", 0)
