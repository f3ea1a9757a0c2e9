"""The ablation: compound against depth-, width- and resolution-only scaling of one base at the same FLOPs."""

from __future__ import annotations

import csv

import pytest

from nas.arch.cost import count_flops
from nas.arch.efficientnet import efficientnet
from nas.arch.spec import Spec, StageSpec
from nas.errors import NasError
from nas.proxy.presets import PRESETS
from scaling.ablation import FLOPS_MATCH, METHODS, scale_to_budget, verdicts
from tests.scaling.test_grid_study import QUICK

# Small enough to train in seconds, with channels and repeats fine enough for every method to land within 5%.
BASE = Spec(stages=(StageSpec("ds", 1, 3, 1, 1, 16, 0.25), StageSpec("mbconv", 2, 3, 2, 3, 40, 0.25),
                    StageSpec("mbconv", 2, 5, 2, 3, 64, 0.25)), stem_channels=16, head_channels=128, name="abl")


@pytest.mark.parametrize("budget", [2.0, 4.0])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_reaches_the_budget_of_b0_within_five_percent(method, budget):
    scaled = scale_to_budget(efficientnet("b0"), method, budget, (1.2, 1.1, 1.15), "round")
    assert abs(count_flops(scaled.spec) / count_flops(efficientnet("b0")) / budget - 1) <= FLOPS_MATCH
    assert scaled.flops_ratio == pytest.approx(count_flops(scaled.spec) / count_flops(efficientnet("b0")))
    untouched = {"depth": ("width", "resolution"), "width": ("depth", "resolution"),
                 "resolution": ("depth", "width"), "compound": ()}[method]
    assert all(getattr(scaled, name) == 1.0 for name in untouched)
    if method == "resolution":
        assert scaled.spec.stages == efficientnet("b0").stages


def test_a_budget_rounding_cannot_reach_is_refused():
    tiny = Spec(stages=(StageSpec("ds", 1, 3, 1, 1, 8, 0.25),), stem_channels=8, head_channels=16)
    with pytest.raises(NasError, match="within 5%"):
        scale_to_budget(tiny, "width", 2.0, (1.2, 1.1, 1.15), "round")


def test_ablation_end_to_end_writes_both_files(run_nas, tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "quick", QUICK)
    base = tmp_path / "abl.json"
    base.write_text(BASE.to_json())
    code, out, err = run_nas("scale", "--base", str(base), "--runs", str(tmp_path / "runs"), "--alpha", "1.2",
                             "--beta", "1.1", "--gamma", "1.15", "--ablation", "--proxy", "quick",
                             "--ablation-budgets", "2", "--rung-images", "1280", "--final-seeds", "2")
    assert code == 0, err
    folder = tmp_path / "runs" / "scale-abl" / "family"
    with open(folder / "ablation.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], float(row["budget"])) for row in rows] == [("base", 1.0)] + [
        (method, 2.0) for method in METHODS]
    for row in rows:
        assert abs(float(row["flops_ratio"]) / float(row["budget"]) - 1) <= FLOPS_MATCH
        assert float(row["flops"]) == pytest.approx(float(row["flops_ratio"]) * count_flops(BASE), rel=1e-3)
        assert len(row["seed_accs"].split()) == 2 and row["failed_runs"] == "0"
        seeds = [float(v) for v in row["seed_accs"].split()]
        assert float(row["val_acc"]) == pytest.approx(sum(seeds) / 2, abs=1e-5)
        assert float(row["spread"]) == pytest.approx(max(seeds) - min(seeds), abs=1e-5)
    assert (folder / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    verdicts = [line for line in out.splitlines() if line.startswith("ablation:")]
    assert len(verdicts) == 1 and "seed spread" in verdicts[0]
    assert "Compound against single-dimension scaling" in (folder / "summary.md").read_text()


def test_the_verdict_weighs_the_gap_against_the_two_compared_methods_spreads():
    def row(method, acc, spread):
        return {"method": method, "budget": 4.0, "val_acc": acc, "spread": spread}
    rows = [{"method": "base", "budget": 1.0, "val_acc": 0.76, "spread": 0.01},
            row("compound", 0.765, 0.0115), row("depth", 0.538, 0.19), row("width", 0.735, 0.03),
            row("resolution", 0.7885, 0.006)]
    (line,) = verdicts(rows)
    assert line.startswith("4x FLOPs: resolution scaling wins (0.7885) over compound (0.7650) by 2.35 points")
    assert "more than the larger seed spread of the two (1.15 points)" in line
    rows[2]["val_acc"] = 0.78  # now depth is the runner-up: its own 19-point spread decides
    assert "within the larger seed spread of the two (19.00 points)" in verdicts(rows)[0]
    one_seed = [{**r, "spread": ""} for r in rows]
    assert verdicts(one_seed)[0].endswith("(one seed each: no spread measured)")
    # one line per budget, smallest first (the end-to-end test trains one budget)
    at_two = [{**r, "budget": 2.0, "val_acc": r["val_acc"] - 0.01} for r in rows[1:]]
    lines = verdicts(at_two + rows)
    assert [line.split(" ", 1)[0] for line in lines] == ["2x", "4x"] and lines[1] == verdicts(rows)[0]
    assert "resolution scaling wins (0.7785)" in lines[0]
