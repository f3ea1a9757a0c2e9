"""Search on latency (`--objective latency`): MnasNet's reward ACC x (LAT / T)^w on the latency a per-part table
predicts, end to end on the tiny space with the supernet strategy, and the inputs it refuses."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pandas as pd
import pytest

from nas.arch.cost import count_flops
from nas.arch.space import decode, load_space
from nas.arch.spec import Spec
from nas.latency.parts import space_parts
from nas.latency.predict import load_predictor
from nas.latency.table import LatencyTable, build_latency_table, current_setup
from nas.proxy.data import FASHION_MNIST_DIR
from nas.search.cost import LATENCY
from nas.search.finalists import load_finalists
from nas.search.report import load_run_study
from nas.search.reward import Reward
from nas.search.selection import completed_trials, front_trials

TINY = ["--strategy", "supernet", "--space", "tiny", "--proxy", "tiny", "--supernet-preset", "tiny", "--target-flops", "40M"]


def test_the_latency_reward_is_mnasnet_formula():
    target = 0.02
    soft, hard = Reward.soft(target, -0.07, LATENCY), Reward.hard(target, LATENCY)
    for latency in (0.005, 0.02, 0.031, 0.08):
        assert soft(0.8, latency) == pytest.approx(0.8 * (latency / target) ** -0.07, rel=1e-12)
        assert hard(0.8, latency) == pytest.approx(0.8 if latency <= target else 0.8 * target / latency, rel=1e-12)
    assert soft.target == target  # a latency target is kept as given, not rounded to an integer
    assert soft.describe() == "ACC x (latency / 20 ms)^-0.07"
    assert hard.describe() == "ACC x (latency / 20 ms)^w, w = 0 below the target, -1 above"
    assert Reward.soft(400_000_000).describe() == "ACC x (FLOPs / 400M)^-0.07"


def tiny_table(path: Path) -> Path:
    """A table of every part of the tiny space, each entry a different number of milliseconds (so a wrong sum
    shows). Measuring all its parts would cost more than the search itself; the search only reads the table,
    and tests/latency check how tables are measured (the bad-input test below measures a partial one)."""
    rng = random.Random(0)
    entries = {key: rng.uniform(0.2e-3, 2e-3) for key in space_parts(load_space("tiny"))}
    LatencyTable(setup=current_setup(), entries=entries).save(path)
    return path


def median_latency(table: Path, count: int = 40) -> float:
    """The median predicted latency of random tiny-space networks: a target the search can straddle."""
    space, rng = load_space("tiny"), random.Random(1)
    predict = load_predictor(table, space)
    return statistics.median(predict(decode(space, {name: rng.choice(choices) for name, choices in
                                                    space.param_choices().items()})) for _ in range(count))


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="Fashion-MNIST is not installed")
def test_a_supernet_search_on_predicted_latency_end_to_end(tmp_path, run_nas):
    table = tiny_table(tmp_path / "tiny-latency.json")
    target = median_latency(table)
    argv = ["search", *TINY, "--objective", "latency", "--target-latency", f"{target * 1e3:.4f}ms",
            "--latency-table", str(table), "--hard-cap", "1.1", "--n-trials", "12", "--population", "6",
            "--finalists", "2", "--study", "lat", "--runs-dir", str(tmp_path), "--seed", "1"]
    code, out, err = run_nas(*argv)
    assert code == 0, err
    assert "ms latency" in out.splitlines()[-2]  # the selected line

    run_dir = tmp_path / "lat"
    study = load_run_study(run_dir)
    predict = load_predictor(table, load_space("tiny"))
    target = float(f"{target * 1e3:.4f}") * 1e-3  # what the command line said
    reward = Reward.soft(target, -0.07, LATENCY)
    finalists = [t for t in load_finalists(study).get_trials() if t.state.name == "COMPLETE"]
    search = [t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(search) == 12 and finalists
    assert any(t.state.name == "PRUNED" for t in search) and any(t.state.name == "COMPLETE" for t in search)
    for trial in search + finalists:
        attrs = trial.user_attrs
        spec = Spec.from_dict(attrs["spec"])
        assert attrs["latency_s"] == predict(spec) and attrs["flops"] == count_flops(spec)
        if trial.state.name == "COMPLETE":
            assert trial.values[1] == attrs["latency_s"]
            assert attrs["reward"] == pytest.approx(reward(attrs["accuracy"], attrs["latency_s"]), rel=1e-12)
        else:
            assert attrs["latency_s"] > 1.1 * target and "ms latency is above the hard cap" in attrs["reason"]

    trials = pd.read_csv(run_dir / "trials.csv")
    by_number = {t.number: t for t in search}
    for _, row in trials.iterrows():
        if row["number"] in by_number:
            assert row["latency_ms"] == pytest.approx(by_number[row["number"]].user_attrs["latency_s"] * 1e3)
    front = pd.read_csv(run_dir / "pareto.csv")  # the front of accuracy and latency, not of FLOPs
    assert list(front["number"]) == [t.number for t in front_trials(completed_trials(search), LATENCY.attr)]
    assert front["latency_ms"].is_monotonic_increasing and "flops" in front.columns
    best = json.loads((run_dir / "best.json").read_text())
    chosen = max(finalists, key=lambda t: t.user_attrs["reward"])
    assert best["objective"] == "latency" and best["latency_s"] == chosen.user_attrs["latency_s"]
    assert best["target_latency"] == pytest.approx(target) and best["latency_table"] == str(table)
    assert best["reward_formula"].startswith("ACC x (latency / ") and best["flops"] == chosen.user_attrs["flops"]
    summary = (run_dir / "summary.md").read_text()
    assert "ms latency" in summary and f"{target * 1e3:g} ms target" in summary and "latency min" in summary
    assert (run_dir / "pareto.png").stat().st_size > 0

    # The settings file round trip: the same study again from search.toml has nothing left to do.
    settings = (run_dir / "search.toml").read_text()
    assert 'objective = "latency"' in settings and f'latency-table = "{table}"' in settings
    code, out, err = run_nas("search", "--config", str(run_dir / "search.toml"))
    assert code == 0, err
    assert len(load_run_study(run_dir).get_trials()) == len(study.get_trials())
    # Another objective is another study.
    code, out, err = run_nas("search", *TINY, "--hard-cap", "1.1", "--n-trials", "12", "--population", "6",
                             "--finalists", "2", "--study", "lat", "--runs-dir", str(tmp_path), "--seed", "1")
    assert code == 2 and "other settings" in err and "objective" in err


def test_bad_latency_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, run_nas):
    full = tiny_table(tmp_path / "full.json")
    space = load_space("tiny")
    one = decode(space, {name: choices[0] for name, choices in space.param_choices().items()})
    partial = build_latency_table(tmp_path / "partial.json", specs=[one], runs=1, warmup=0, calibration=0)  # measured: 5 parts
    assert 0 < len(partial) < len(space_parts(space))
    (tmp_path / "junk.json").write_text("{ not json")
    cases = [
        (["--objective", "latency", "--target-latency", "20ms"], "latency_table (--latency-table)"),
        (["--objective", "latency", "--latency-table", str(full)], "target_latency (--target-latency)"),
        (["--objective", "latency", "--target-latency", "20", "--latency-table", str(full)], "--target-latency"),
        (["--objective", "latency", "--target-latency", "-2ms", "--latency-table", str(full)], "--target-latency"),
        (["--target-latency", "20ms"], "go with objective latency"),
        (["--objective", "speed"], "invalid choice"),
        (["--objective", "latency", "--target-latency", "20ms", "--latency-table", str(tmp_path / "none")],
         "not found"),
        (["--objective", "latency", "--target-latency", "20ms", "--latency-table", str(tmp_path / "junk.json")],
         "not valid JSON"),
        (["--objective", "latency", "--target-latency", "20ms", "--latency-table", str(tmp_path / "partial.json")],
         "has no entry"),
    ]
    runs = tmp_path / "runs"
    for extra, word in cases:
        code, out, err = run_nas("search", *TINY, "--study", "bad", "--runs-dir", str(runs), *extra)
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err + out, (extra, err)
        assert len(lines) == 1 and word in lines[0], (extra, err)
        assert not runs.exists(), extra  # refused before the supernet phase writes anything
