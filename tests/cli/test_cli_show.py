import pytest

from nas.arch.efficientnet import efficientnet
from nas.arch.spec import save_spec


def test_show_family_lists_all_eight_with_reference_counts(run_nas):
    code, out, _ = run_nas("show", "--family")
    assert code == 0
    for count in ("5,288,548", "7,794,184", "66,347,960"):
        assert count in out
    assert len(out.strip().splitlines()) == 9


def test_show_name_prints_stage_table_with_totals(run_nas):
    code, out, _ = run_nas("show", "b0")
    assert code == 0 and "5,288,548" in out and "399.4M" in out
    assert out.count("mbconv") == 6


def test_show_spec_file_and_overrides(run_nas, tmp_path):
    path = tmp_path / "b2.json"
    save_spec(efficientnet("b2"), path)
    code, out, _ = run_nas("show", str(path), "--resolution", "128", "--classes", "10")
    assert code == 0 and "128x128x3 input, 10 classes" in out


def test_show_block_strings(run_nas):
    code, out, _ = run_nas("show", "ds_r1_k3_s1_e1_c16_se0.25 ir_r2_k3_s2_e6_c24_se0.25")
    assert code == 0 and "total" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "b9"], "cannot read model 'b9'"),
        (["show", "b0", "--resolution", "-3"], "resolution"),
        (["show", "b0", "--resolution", "abc"], "invalid int value"),
        (["show", "missing.json"], "not found"),
        (["show", "r1_k4_s11_e1_i32_o16"], "kernel"),
        (["show"], "needs a model"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run_nas, argv, message):
    code, out, err = run_nas(*argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
