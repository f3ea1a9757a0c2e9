"""The halving strategy (the default) end to end on the tiny space: every candidate trained over a quarter of
the proxy's length, the finalists over all of it, every output file, and a resume after an interruption in
each phase."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nas.proxy.data import FASHION_MNIST_DIR
from nas.proxy.presets import get_preset
from nas.search.config import SearchConfig
from nas.search.finalists import load_finalists
from nas.search.report import OUTPUT_FILES, gather, load_run_study
from nas.search.run import run_search
from nas.search.selection import choose_finalists, completed_trials
from tests.search.test_search import Epoch, fake_accuracy
from tests.search.test_supernet_search import tiny_reference

pytestmark = pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed")


def test_the_screening_run_is_a_share_of_the_proxy_length():
    search = get_preset("search")
    # A quarter of the search preset is one of its four epochs: the same 70 optimizer steps.
    assert search.shortened(0.25).total_steps(9000 // 128, 128) == search.with_changes(epochs=1).total_steps(70, 128)
    assert search.with_changes(epochs=4).shortened(0.25).epochs == 1
    assert get_preset("tiny").shortened(0.01).images == get_preset("tiny").batch_size  # at least one batch
    assert SearchConfig().strategy == "halving" and SearchConfig().staged
    assert not SearchConfig(strategy="standalone").staged


def test_a_custom_accuracy_source_is_told_the_screening_share(tmp_path):
    calls = []

    def evaluate(spec, on_epoch, fraction=1.0):  # stands in for a proxy of the user's own
        calls.append(fraction)
        on_epoch(Epoch(1, fake_accuracy(spec) * fraction))
        return fake_accuracy(spec) * fraction

    config = SearchConfig(space="tiny", target_flops=60_000_000, population=4, n_trials=6, finalists=2,
                          screen_fraction=0.5, runs_dir=str(tmp_path), study="custom")
    study = run_search(config, evaluate=evaluate, quiet=True)
    trained = [t for t in study.get_trials() if "val_acc_history" in t.user_attrs]  # twins and capped ones are not
    finalists = completed_trials(load_finalists(study).get_trials())
    # every screening run at half the length, then the finalists at the whole length
    assert len(trained) >= 2 and calls == [0.5] * len(trained) + [1.0] * len(finalists)
    assert all(t.values[0] == pytest.approx(2 * t.user_attrs["screen_acc"]) for t in finalists)


def test_tiny_halving_search_end_to_end_with_resume(tmp_path, run_nas, monkeypatch):
    import nas.proxy.trainer

    argv = ["search", "--space", "tiny", "--proxy", "tiny", "--target-flops", "40M", "--n-trials", "8",
            "--population", "4", "--finalists", "2", "--enqueue", str(tiny_reference(tmp_path)), "--study", "sh",
            "--runs-dir", str(tmp_path), "--seed", "1"]
    run_dir, full = tmp_path / "sh", get_preset("tiny")
    real_train, lengths = nas.proxy.trainer.train, []

    def train(spec, data, preset, **kwargs):  # records each run's length; stops where the test says
        lengths.append(preset.images)
        if stop_at(lengths):
            raise KeyboardInterrupt
        return real_train(spec, data, preset, **kwargs)

    monkeypatch.setattr(nas.proxy.trainer, "train", train)
    stop_at = lambda runs: len(runs) == 4  # noqa: E731  (Ctrl-C in the 4th screening run)
    code, out, err = run_nas(*argv)
    assert code == 130, err
    assert set(lengths) == {full.images // 4}  # screening runs only, each a quarter of the proxy's length

    lengths.clear()
    stop_at = lambda runs: runs[-1] == full.images  # noqa: E731  (Ctrl-C in the first finalist)
    code, out, err = run_nas(*argv)
    assert code == 130, err
    # The 3 screening runs finished before the interruption are kept; every other trained one ran now.
    trained = [t for t in load_run_study(run_dir).get_trials() if t.state.name == "COMPLETE"]
    assert lengths[:-1] == [full.images // 4] * (len(trained) - 3) and lengths[-1] == full.images

    stop_at = lambda runs: False  # noqa: E731
    code, out, err = run_nas(*argv)  # the same command once more: finishes the finalists
    assert code == 0, err
    assert "selected: trial" in out and "screen" in out.splitlines()[-2]

    study = load_run_study(run_dir)
    assert len([t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]) == 8
    assert sum(t.user_attrs.get("fail_kind") == "stale" for t in study.get_trials()) == 1
    finalists = completed_trials(load_finalists(study).get_trials())
    scored = {t.number: t for t in completed_trials(study.get_trials())}
    chosen = choose_finalists(list(scored.values()), (30e6, 50e6), 40e6, 2)
    assert sorted(t.user_attrs["source_trial"] for t in finalists) == sorted(t.number for t in chosen)
    assert any(t.user_attrs.get("enqueued") for t in finalists)
    for final in finalists:  # each finalist keeps both scores: its screening run's and its own full run's
        source = scored[final.user_attrs["source_trial"]]
        assert final.user_attrs["screen_acc"] == source.user_attrs["accuracy"] and final.params == source.params
        assert len(final.user_attrs["val_acc_history"]) == 2 and len(source.user_attrs["val_acc_history"]) == 1

    for name in OUTPUT_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    table = pd.read_csv(run_dir / "trials.csv")
    assert (table["estimator"] == "halving").all() and "supernet_loss" not in table.columns
    flagged = table[table["finalist"]]
    assert sorted(flagged["number"]) == sorted(t.user_attrs["source_trial"] for t in finalists)
    assert flagged["standalone_acc"].notna().all() and table.loc[~table["finalist"], "standalone_acc"].isna().all()
    best = json.loads((run_dir / "best.json").read_text())
    selected = max(finalists, key=lambda t: t.user_attrs["reward"])
    assert best["finalist_trial"] == selected.number and best["screen_acc"] == selected.user_attrs["screen_acc"]
    assert best["strategy"] == "halving" and best["accuracy"] == selected.user_attrs["accuracy"]
    assert {"screen_acc", "standalone_acc"} <= set(pd.read_csv(run_dir / "pareto.csv").columns)
    summary = (run_dir / "summary.md").read_text()
    for heading in ("Phase 1, screening runs (0.25 of the tiny preset", "Phase 2, finalists retrained",
                    "Finalists: screening accuracy against stand-alone", "Against the target"):
        assert heading in summary, heading


class ChanceSource:
    """A custom accuracy source that knows its data set's classes, as the shipped one does."""

    num_classes = 10

    def __init__(self, accuracy) -> None:
        self.accuracy = accuracy

    def __call__(self, spec, on_epoch, fraction=1.0) -> float:
        on_epoch(Epoch(1, self.accuracy(spec)))
        return self.accuracy(spec)


@pytest.mark.parametrize("strategy", ["halving", "standalone"])
def test_first_scores_at_chance_are_called_noise(tmp_path, strategy):
    from nas.search.report import chance_warning

    def search(study, accuracy):
        config = SearchConfig(strategy=strategy, space="tiny", target_flops=200_000_000, population=4, n_trials=8,
                              finalists=2, runs_dir=str(tmp_path), study=study)
        return gather(run_search(config, evaluate=ChanceSource(accuracy), quiet=True))

    # 10 classes: 0.1 is chance, anything up to 0.2 is near it; bigger networks score a little higher
    noise = search("noise", lambda spec: 0.1 + fake_accuracy(spec) / 10)
    warning = chance_warning(noise)
    assert warning and "near chance" in warning and "/ 10" in warning
    assert ("--screen-fraction" in warning) == (strategy == "halving")
    assert warning in (tmp_path / "noise" / "summary.md").read_text()
    assert chance_warning(search("signal", lambda spec: 0.5 + fake_accuracy(spec) / 10)) is None
    assert "near chance" not in (tmp_path / "signal" / "summary.md").read_text()


@pytest.mark.parametrize("trend", [-1, 1])
def test_the_target_section_says_why_the_selection_is_below_the_window(tmp_path, trend):
    from nas.arch.cost import count_flops

    # trend -1: smaller networks are more accurate; +1: bigger ones, by less than the FLOPs term pays for
    source = ChanceSource(lambda spec: 0.6 + trend * count_flops(spec) / 1e10)
    config = SearchConfig(strategy="standalone", space="tiny", target_flops=100_000_000, population=4, n_trials=10,
                          sampler="random", hard_cap=3.0, runs_dir=str(tmp_path), study="t")
    evidence = gather(run_search(config, evaluate=source, quiet=True))
    best, section = evidence.selected, (tmp_path / "t" / "summary.md").read_text().split("## Against the target")[1]
    assert best.user_attrs["flops"] < 75e6, "the draw has no network below the window"
    if trend < 0:
        assert "on accuracy alone" in section and "accuracy is flat" not in section
    else:
        assert "accuracy is flat" in section and "on accuracy alone" not in section
