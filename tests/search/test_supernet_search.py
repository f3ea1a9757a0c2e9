"""The supernet strategy end to end on the tiny space: supernet, candidates scored on it, finalists retrained
stand-alone, every output file, and a resume after an interruption in each phase."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nas.arch.space import decode, load_space
from nas.proxy.data import FASHION_MNIST_DIR
from nas.search.finalists import load_finalists
from nas.search.report import OUTPUT_FILES, load_run_study
from nas.search.selection import choose_finalists, completed_trials

pytestmark = pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed")


def tiny_reference(tmp_path: Path) -> Path:
    """A spec file of one tiny-space architecture, enqueued like B0 in the default search."""
    space = load_space("tiny")
    params = {name: choices[0] for name, choices in space.param_choices().items()}
    path = tmp_path / "reference.json"
    path.write_text(decode(space, params).to_json())
    return path


def test_tiny_supernet_search_end_to_end_with_resume(tmp_path, run_nas, monkeypatch):
    import nas.supernet.scoring
    import nas.supernet.training

    argv = ["search", "--strategy", "supernet", "--space", "tiny", "--proxy", "tiny", "--supernet-preset", "tiny", "--target-flops", "40M",
            "--n-trials", "24", "--population", "8", "--finalists", "2", "--enqueue", str(tiny_reference(tmp_path)),
            "--study", "sn", "--runs-dir", str(tmp_path), "--seed", "1"]
    run_dir = tmp_path / "sn"

    # Interrupted while scoring candidates (phase 2): Ctrl-C on the 6th score.
    real_score, calls = nas.supernet.scoring.SupernetScorer.score, []

    def interrupting_score(self, spec):
        calls.append(spec)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_score(self, spec)

    monkeypatch.setattr(nas.supernet.scoring.SupernetScorer, "score", interrupting_score)
    code, out, err = run_nas(*argv)
    assert code == 130, err
    assert "[supernet] training 12 steps" in err and (run_dir / "supernet" / "supernet.pt").is_file()
    monkeypatch.setattr(nas.supernet.scoring.SupernetScorer, "score", real_score)

    # Interrupted while retraining the first finalist (phase 3); the supernet is not trained again.
    import nas.search.estimators

    real_evaluator = nas.search.estimators.proxy_evaluator

    def interrupting_evaluator(config):
        def stop(spec, on_epoch):
            raise KeyboardInterrupt

        return stop

    monkeypatch.setattr(nas.search.estimators, "proxy_evaluator", interrupting_evaluator)
    monkeypatch.setattr(nas.supernet.training, "train_supernet", _must_not_train)
    code, out, err = run_nas(*argv)
    assert code == 130, err
    assert "[supernet] training" not in err
    monkeypatch.setattr(nas.search.estimators, "proxy_evaluator", real_evaluator)

    code, out, err = run_nas(*argv)  # the same command once more: finishes the finalists
    assert code == 0, err
    assert "selected: trial" in out and "supernet" in out.splitlines()[-2]

    study = load_run_study(run_dir)
    finished = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 24
    assert sum(t.user_attrs.get("fail_kind") == "stale" for t in study.get_trials()) == 1  # the interrupted one
    final_trials = load_finalists(study).get_trials()
    assert sum(t.user_attrs.get("fail_kind") == "stale" for t in final_trials) == 1  # and the interrupted finalist
    finalists = completed_trials(load_finalists(study).get_trials())
    scored = {t.number: t for t in completed_trials(study.get_trials())}
    chosen = choose_finalists(list(scored.values()), (30e6, 50e6), 40e6, 2)  # around the target, and enqueued
    assert sorted(t.user_attrs["source_trial"] for t in finalists) == sorted(t.number for t in chosen)
    assert len(finalists) >= 2 and any(t.user_attrs.get("enqueued") for t in finalists)
    for final in finalists:  # each finalist keeps both scores: its search trial's supernet score, its own
        source = scored[final.user_attrs["source_trial"]]
        assert final.user_attrs["supernet_acc"] == source.user_attrs["accuracy"]
        assert final.params == source.params and len(final.user_attrs["val_acc_history"]) == 2
        assert 0.0 <= final.user_attrs["accuracy"] <= 1.0 and "supernet_loss" in source.user_attrs

    for name in OUTPUT_FILES:
        assert (run_dir / name).stat().st_size > 0, name
    table = pd.read_csv(run_dir / "trials.csv")
    assert (table["estimator"] == "supernet").all() and len(table) == len(study.get_trials())
    flagged = table[table["finalist"]]
    assert sorted(flagged["number"]) == sorted(t.user_attrs["source_trial"] for t in finalists)
    assert flagged["standalone_acc"].notna().all() and flagged["accuracy"].notna().all()
    assert table.loc[~table["finalist"], "standalone_acc"].isna().all()
    best = json.loads((run_dir / "best.json").read_text())
    chosen = max(finalists, key=lambda t: t.user_attrs["reward"])
    assert best["finalist_trial"] == chosen.number and best["trial"] == chosen.user_attrs["source_trial"]
    assert best["accuracy"] == chosen.user_attrs["accuracy"] and best["supernet_acc"] == chosen.user_attrs["supernet_acc"]
    assert best["strategy"] == "supernet" and "stand-alone" in best["accuracy_source"]
    front = pd.read_csv(run_dir / "pareto.csv")
    assert {"supernet_acc", "standalone_acc"} <= set(front.columns)
    summary = (run_dir / "summary.md").read_text()
    for heading in ("Phase 1, supernet", "Phase 2, candidates scored", "Phase 3, finalists",
                    "Finalists: supernet score against stand-alone", "Against the target"):
        assert heading in summary, heading


def _must_not_train(*args, **kwargs):
    raise AssertionError("the supernet was trained again although its checkpoint is complete")
