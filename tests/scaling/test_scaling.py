"""Scaling stage without training: the grid and its constraints, the phi family, published and budget families,
the family files and the command's error paths."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from nas._common.parse import parse_flops_list
from nas.arch.compound import scale
from nas.arch.cost import count_flops, count_params
from nas.arch.efficientnet import efficientnet
from nas.arch.layout import block_layout
from nas.arch.spec import Spec, StageSpec, load_spec
from nas.errors import NasError
from nas.model.builder import build_model
from scaling.family import (
    PHI_PRECISION,
    budget_family,
    compound_family,
    largest_phi_within,
    paper_dropout,
    published_family,
)
from scaling.grid import axis_values, flops_ratio, grid_points, scale_point
from scaling.pipeline import with_identity_skips

REFERENCE_PARAMS = [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960]


def test_axis_values_hit_the_decimal_grid_exactly():
    assert axis_values(1.0, 2.0, 0.1) == [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0]
    assert axis_values(1.0, 1.5, 0.25) == [1.0, 1.25, 1.5]
    assert axis_values(1.0, 1.5, 0.3) == [1.0, 1.3]


@pytest.mark.parametrize("step, tolerance", [(0.1, 0.1), (0.25, 0.1), (0.05, 0.05)])
def test_nominal_grid_keeps_exactly_the_points_near_two(step, tolerance):
    b0 = efficientnet("b0")
    kept = {(p.alpha, p.beta, p.gamma) for p in grid_points(b0, step, tolerance, "nominal")}
    # Independent enumeration with exact decimal steps.
    n_alpha, n_bg = round(1 / step), round(0.5 / step)
    expected = set()
    for i, j, k in itertools.product(range(n_alpha + 1), range(n_bg + 1), range(n_bg + 1)):
        a, b, g = (round(1 + i * step, 9), round(1 + j * step, 9), round(1 + k * step, 9))
        if abs(a * b * b * g * g - 2) <= tolerance + 1e-9:
            expected.add((a, b, g))
    assert kept == expected and (2.0, 1.0, 1.0) in kept


def test_paper_point_is_on_the_fine_grid_and_nni_grid_is_as_published():
    b0 = efficientnet("b0")
    fine = {(p.alpha, p.beta, p.gamma) for p in grid_points(b0, 0.05, 0.1)}
    assert (1.2, 1.1, 1.15) in fine
    nni = grid_points(b0, 0.1, 0.1)  # NNI's step-1 grid: |product - 2| < 0.1 at step 0.1
    assert all(abs(p.product - 2) <= 0.1 + 1e-9 for p in nni) and len(nni) == 21


def test_actual_constraint_uses_the_rounded_networks_flops():
    b0 = efficientnet("b0")
    actual = grid_points(b0, 0.1, 0.1, "actual")
    assert actual and all(abs(p.flops_ratio - 2) <= 0.1 + 1e-9 for p in actual)
    nominal = grid_points(b0, 0.1, 0.1, "nominal")
    # Rounding moves points: the two constraints keep different sets on B0.
    assert {p.label for p in actual} != {p.label for p in nominal}
    for point in actual + nominal:
        scaled = scale(b0, width=point.beta, depth=point.alpha, resolution=point.gamma, depth_rounding="round")
        assert point.flops_ratio == pytest.approx(count_flops(scaled) / count_flops(b0))


def test_flops_ratio_agrees_with_fvcore_on_built_models():
    base = efficientnet("b0").replace(resolution=64, num_classes=10)
    ratio = flops_ratio(base, 1.4, 1.2, 1.2)
    measured = []
    for spec in (base, scale_point(base, 1.4, 1.2, 1.2)):
        model = build_model(spec).eval()
        image = torch.zeros(1, 3, spec.resolution, spec.resolution)
        analysis = FlopCountAnalysis(model, image)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        measured.append(analysis.total())
    assert ratio == pytest.approx(measured[1] / measured[0], rel=1e-9)


def test_depth_rounding_round_is_nearest_and_ceil_is_the_reference():
    b0 = efficientnet("b0")
    assert [s.repeats for s in scale_point(b0, 1.2, 1.0, 1.0, "ceil").stages] == [2, 3, 3, 4, 4, 5, 2]
    assert [s.repeats for s in scale_point(b0, 1.2, 1.0, 1.0, "round").stages] == [1, 2, 2, 4, 4, 5, 1]
    assert [s.repeats for s in scale_point(b0, 1.25, 1.0, 1.0, "round").stages] == [1, 3, 3, 4, 4, 5, 1]
    with pytest.raises(NasError, match="depth-rounding"):
        scale_point(b0, 1.2, 1.0, 1.0, "floor")


@pytest.mark.parametrize("step, tolerance, message", [(0, 0.1, "grid-step"), (0.1, -1, "tolerance"),
                                                      (0.3, 0.01, "no grid point")])
def test_grid_rejects_options_that_make_no_grid(step, tolerance, message):
    with pytest.raises(NasError, match=message):
        grid_points(efficientnet("b0"), step, tolerance)


def test_paper_coefficients_give_a_family_close_to_two_to_the_phi():
    """alpha 1.2, beta 1.1, gamma 1.15 from B0: the actual FLOPs ratio after rounding next to 2^phi.
    Round-to-nearest repeats keep every member within 25%; the reference's ceil overshoots at phi = 1
    (B0's one-block stages become two) and is within 25% from phi = 2 on."""
    b0 = efficientnet("b0")
    base_flops = count_flops(b0)
    ceil_family = compound_family(b0, 1.2, 1.1, 1.15, "ceil")
    round_family = compound_family(b0, 1.2, 1.1, 1.15)  # the default: round to nearest
    for ceil_member, round_member in zip(ceil_family[1:], round_family[1:]):
        phi = ceil_member.phi
        assert abs(count_flops(round_member.spec) / base_flops / 2**phi - 1) <= 0.25
        if phi >= 2:
            assert abs(count_flops(ceil_member.spec) / base_flops / 2**phi - 1) <= 0.25
    b1 = ceil_family[1].spec
    assert count_flops(b1) / base_flops == pytest.approx(2.555, abs=1e-3)
    assert [s.repeats for s in b1.stages] == [2, 3, 3, 4, 4, 5, 2] and b1.resolution == 258
    assert [m.spec.resolution for m in ceil_family] == [round(224 * 1.15**phi) for phi in range(8)]
    assert [m.spec.dropout for m in ceil_family] == [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]


def test_members_past_the_spec_limits_are_left_out():
    # alpha = 2 doubles B0's 4-block stage to 64 blocks at phi = 4, 128 at phi = 5: past the spec's limit.
    members = compound_family(efficientnet("b0"), 2.0, 1.0, 1.0)
    assert [m.name for m in members] == ["b0", "b1", "b2", "b3", "b4"]
    assert max(s.repeats for s in members[-1].spec.stages) == 64


def test_paper_dropout_schedule():
    assert [paper_dropout(phi) for phi in range(9)] == [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.5]
    assert paper_dropout(2.99) == 0.3


def test_published_family_reproduces_the_reference_parameter_counts():
    members = published_family(efficientnet("b0"))
    assert [count_params(m.spec) for m in members] == REFERENCE_PARAMS
    for phi, member in enumerate(members):
        assert member.spec == efficientnet(f"b{phi}").replace(name=f"b{phi}")


def test_budget_member_is_the_largest_phi_that_fits():
    b0 = efficientnet("b0")
    for budget in (0.7e9, 1.8e9, 4.2e9):
        phi = largest_phi_within(b0, 1.2, 1.1, 1.15, budget)
        inside = scale_point(b0, 1.2**phi, 1.1**phi, 1.15**phi)
        beyond_phi = phi + 2 * PHI_PRECISION
        beyond = scale_point(b0, 1.2**beyond_phi, 1.1**beyond_phi, 1.15**beyond_phi)
        assert count_flops(inside) <= budget < count_flops(beyond)
    members = budget_family(b0, 1.2, 1.1, 1.15, [1.8e9, 0.7e9])
    assert [m.name for m in members] == ["b0", "budget_700M", "budget_1.8G"]
    assert members[1].phi < members[2].phi


def test_budgets_are_validated():
    assert parse_flops_list("0.7e9, 1.8G") == [700_000_000, 1_800_000_000]
    for text in ("abc", "1e9,-2", "inf"):
        with pytest.raises(NasError, match="--budgets"):
            parse_flops_list(text)
    with pytest.raises(NasError, match="below the base"):
        largest_phi_within(efficientnet("b0"), 1.2, 1.1, 1.15, 1e8)
    with pytest.raises(NasError, match="never grows"):
        largest_phi_within(efficientnet("b0"), 1.0, 1.0, 1.0, 1e9)


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_scale_published_writes_the_family_folder(run_nas, tmp_path):
    code, out, err = run_nas("scale", "--base", "b0", "--published", "--runs", str(tmp_path))
    assert code == 0, err
    folder = tmp_path / "scale-b0" / "family"
    rows = _read_csv(folder / "family.csv")
    assert [int(row["params"]) for row in rows] == REFERENCE_PARAMS
    assert [row["name"] for row in rows] == [f"b{phi}" for phi in range(8)]
    assert load_spec(folder / "b3.json") == efficientnet("b3").replace(name="b3")
    assert (folder / "scaling.png").stat().st_size > 1000 and not (folder / "grid.csv").exists()
    assert "66,347,960" in out


def test_scale_with_given_coefficients_and_budgets(run_nas, tmp_path):
    code, _, err = run_nas("scale", "--base", "b0", "--published", "--study", "mine", "--runs", str(tmp_path))
    assert code == 0, err
    code, out, err = run_nas("scale", "--base", "b0", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15",
                             "--budgets", "0.7e9,4.2e9", "--study", "mine", "--runs", str(tmp_path))
    assert code == 0, err
    # The budget family replaces the earlier one: no b1..b7 files left beside it.
    members = sorted(path.name for path in (tmp_path / "mine" / "family").glob("*.json"))
    assert members == ["b0.json", "budget_4.2G.json", "budget_700M.json"]
    rows = _read_csv(tmp_path / "mine" / "family" / "family.csv")
    assert [row["name"] for row in rows] == ["b0", "budget_700M", "budget_4.2G"]
    assert int(rows[1]["flops"]) <= 0.7e9 and int(rows[2]["flops"]) <= 4.2e9
    assert float(rows[2]["flops_ratio"]) == pytest.approx(int(rows[2]["flops"]) / int(rows[0]["flops"]), abs=1e-4)
    assert math.isclose(float(rows[1]["two_pow_phi"]), 2 ** float(rows[1]["phi"]), rel_tol=1e-3)


def test_scale_writes_into_the_study_folder_of_a_best_json(run_nas, tmp_path):
    study = tmp_path / "runs" / "search1"
    study.mkdir(parents=True)
    (study / "best.json").write_text('{"spec": ' + efficientnet("b0").to_json() + ', "value": 0.9}')
    code, _, err = run_nas("scale", "--base", str(study / "best.json"), "--alpha", "1.2", "--beta", "1.1",
                           "--gamma", "1.15")
    assert code == 0, err
    assert load_spec(study / "family" / "b1.json").resolution == 258


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--alpha", "1.2"], "all three"),
        (["--alpha", "0.9", "--beta", "1", "--gamma", "1"], "--alpha"),
        (["--budgets", "1e6", "--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15"], "below the base"),
        (["--budgets", "lots"], "--budgets"),
        (["--published", "--budgets", "1e9"], "--published"),
        (["--grid-step", "0.3", "--tolerance", "0.01"], "no grid point"),
        (["--grid-step", "-1"], "--grid-step"),
        (["--rung-images", "many"], "--rung-images"),
        (["--final-seeds", "0"], "--final-seeds"),
        (["--published", "--ablation"], "--ablation"),
        (["--ablation", "--ablation-budgets", "1"], "--ablation-budgets"),
    ],
)
def test_scale_errors_are_one_line_and_exit_2(run_nas, tmp_path, argv, message):
    code, out, err = run_nas("scale", "--base", "b0", "--runs", str(tmp_path), *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "scale-b0" / "family").exists()


def test_scale_rejects_a_missing_base(run_nas, tmp_path):
    code, _, err = run_nas("scale", "--base", str(tmp_path / "nope.json"), "--runs", str(tmp_path))
    assert code == 2 and "nope.json" in err


def test_grid_preset_is_the_named_recipe_and_the_rungs_come_from_the_options():
    from nas.proxy.presets import get_preset
    from scaling.halving import DEFAULT_RUNGS
    from scaling.pipeline import ScalingOptions, grid_preset

    assert grid_preset(ScalingOptions()) == get_preset("scale")
    assert grid_preset(ScalingOptions(proxy="tiny")) == get_preset("tiny")
    with pytest.raises(NasError, match="preset"):
        grid_preset(ScalingOptions(proxy="huge"))
    assert ScalingOptions().rungs == DEFAULT_RUNGS
    rungs = ScalingOptions(rung_images=(100, 200, 300), final_seeds=3).rungs
    assert [(r.keep, r.images, r.epochs, r.seeds) for r in rungs] == [(1.0, 100, 1, 1), (0.5, 200, 1, 1),
                                                                      (2, 300, 2, 3)]


def test_the_default_grid_is_the_papers_kind_with_the_papers_point_beside_it():
    from scaling.pipeline import reference_point

    b0 = efficientnet("b0")
    grid = grid_points(b0, 0.1, 0.1)
    points, label, added = reference_point(b0, grid, "round")
    assert len(grid) == 21 and added and len(points) == 22 and label == "a1.2_b1.1_g1.15"
    fine = grid_points(b0, 0.05, 0.1)
    assert reference_point(b0, fine, "round")[2] is False  # on a 0.05 grid the paper's point is a grid point


def _without_skips(spec, stages):
    """The spec with the identity skip off in the given stages (0-based)."""
    return dataclasses.replace(spec, stages=tuple(
        dataclasses.replace(stage, skip=index not in stages) for index, stage in enumerate(spec.stages)))


def test_identity_skips_are_added_where_missing():
    b0 = efficientnet("b0")
    assert with_identity_skips(b0) == (b0, [])
    plain = _without_skips(b0, {2, 4})
    skipped, lacking = with_identity_skips(plain)
    assert lacking == [3, 5] and skipped == b0
    # The layout's residual blocks gained are exactly the repeats of those stages (their first blocks change
    # shape: stride 2, or 80 -> 112 channels).
    residual = [block.residual for block in block_layout(skipped)]
    assert sum(residual) - sum(block.residual for block in block_layout(plain)) == \
        sum(stage.repeats - 1 for stage in (b0.stages[2], b0.stages[4]))
    # A regular-conv stage whose first block keeps its shape gains the skip on every block.
    conv = Spec(stages=(StageSpec("ds", 1, 3, 1, 1, 16, 0.0), StageSpec("conv", 3, 3, 1, 1, 16, 0.0, skip=False)),
                stem_channels=16, head_channels=64)
    assert [block.residual for block in block_layout(with_identity_skips(conv)[0])] == [True, True, True, True]


def test_scale_gives_a_plain_stage_its_skip_unless_told_to_keep_it(run_nas, tmp_path):
    base = tmp_path / "plain.json"
    base.write_text(_without_skips(efficientnet("b0"), {3}).to_json())
    given = ("--alpha", "1.2", "--beta", "1.1", "--gamma", "1.15", "--runs", str(tmp_path))
    code, out, err = run_nas("scale", "--base", str(base), "--study", "added", *given)
    assert code == 0, err
    assert "stage(s) 4 had no identity skip" in out
    family = tmp_path / "added" / "family"
    assert "stage(s) 4 had no identity skip" in (family / "summary.md").read_text()
    assert all(stage.skip for stage in load_spec(family / "b3.json").stages)
    code, out, err = run_nas("scale", "--base", str(base), "--study", "kept", "--keep-skips", *given)
    assert code == 0, err
    assert "identity skip" not in out
    assert not load_spec(tmp_path / "kept" / "family" / "b3.json").stages[3].skip
