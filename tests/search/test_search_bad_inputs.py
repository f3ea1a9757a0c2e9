"""Bad input to `nas search` / `nas report`: one line naming the problem, exit code 2, no traceback, and the
existing study and its outputs byte-for-byte untouched (nothing else created either)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from nas.search.config import SearchConfig
from nas.search.run import run_search
from tests.search.test_search import fake_evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)
# The existing study every bad command points at (same settings as these arguments).
STUDY_ARGS = ["--strategy", "standalone", "--space", "tiny", "--proxy", "tiny", "--target-flops", "60M", "--population", "2", "--study", "keep"]


def _files(tmp_path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp_path)): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    tiny = (Path(__file__).resolve().parents[2] / "search_spaces" / "tiny.toml").read_text()
    (folder / "broken.toml").write_text(tiny.replace('name = "tiny"', 'name = "tiny', 1))
    (folder / "wrong_type.toml").write_text(tiny.replace("kernel = [3, 5]", 'kernel = "3"', 1))
    (folder / "no_stages.toml").write_text(tiny.split("[[stages]]")[0])
    (folder / "bad_stride.toml").write_text(tiny.replace("stride = 2", "stride = 4", 1))
    (folder / "not_json.json").write_text("{ this is not json")
    spec = json.loads(__import__("nas.arch.efficientnet", fromlist=["efficientnet"]).efficientnet("b0").to_json())
    spec["stages"][0]["repeats"] = "two"
    (folder / "wrong_type.json").write_text(json.dumps(spec))
    spec["stages"][0]["repeats"] = 1
    spec["stages"][0]["kernel"] = 4
    (folder / "bad_kernel.json").write_text(json.dumps(spec))
    (folder / "list.json").write_text("[1, 2, 3]")
    return folder


BAD_INPUTS = [  # (extra arguments, a word the one-line message must contain)
    (["--n-trials", "-1"], "n_trials"),
    (["--n-trials", "0"], "n_trials"),
    (["--n-trials", "many"], "--n-trials"),
    (["--sampler", "grid"], "sampler"),
    (["--target-flops", "0"], "target-flops"),
    (["--target-flops", "-5M"], "target-flops"),
    (["--target-flops", "lots"], "target-flops"),
    (["--timeout", "-5"], "timeout"),
    (["--timeout", "soon"], "timeout"),
    (["--workers", "0"], "workers"),
    (["--threads", "0"], "threads"),
    (["--population", "1"], "population"),
    (["--hard-cap", "0"], "hard_cap"),
    (["--flops-window", "2,1"], "flops-window"),
    (["--flops-window", "wide"], "flops-window"),
    (["--seed", "-1"], "seed"),
    (["--reward-weight", "nan"], "reward_weight"),
    (["--study", "a/b"], "study"),
    (["--proxy", "huge"], "preset"),
    (["--space", "nope"], "unknown search space"),
    (["--space", "{d}/broken.toml"], "not valid TOML"),
    (["--space", "{d}/wrong_type.toml"], "choices.kernel"),
    (["--space", "{d}/no_stages.toml"], "stages"),
    (["--space", "{d}/bad_stride.toml"], "stages[1].stride"),
    (["--space", "{d}/missing.toml"], "not found"),
    (["--enqueue", "{d}/missing.json"], "not found"),
    (["--enqueue", "{d}/not_json.json"], "not valid JSON"),
    (["--enqueue", "{d}/wrong_type.json"], "repeats"),
    (["--enqueue", "{d}/bad_kernel.json"], "kernel"),
    (["--enqueue", "{d}/list.json"], "spec"),
    (["--enqueue", "ds_r1_k9_s1_e1_c16"], "kernel"),
    (["--enqueue", "ir_r1_kx_s1_e6_c16"], "malformed block string"),
    (["--enqueue", "b9"], "cannot read model"),
    (["--enqueue", "b0"], "not in space"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open storage"),
    (["--storage", "nosuchdb://x"], "cannot open storage"),
    (["--data", "idx:{d}/no-such-folder"], "no-such-folder"),
    (["--data", "cifar10:{d}/no-such-folder"], "no-such-folder"),
    (["--data", "imagenet"], "imagenet"),
    (["--target-flops", "70M"], "other settings"),  # the existing study was made for 60M
    (["--proxy-change", "flip=false"], "proxy_changes"),  # and with the preset unchanged
    (["--proxy-change", "flop=1"], "unknown preset field"),
    (["--proxy-change", "flip=yes"], "must be of type bool"),
    (["--proxy-change", "flip"], "expected FIELD=VALUE"),
    (["--proxy-change", "crop_padding=-1"], "crop_padding"),
    (["--strategy", "halving"], "resumes with --strategy standalone"),  # and with the standalone strategy
    (["--strategy", "fancy"], "invalid choice"),
    (["--strategy", "supernet", "--finalists", "0"], "finalists"),
    (["--strategy", "supernet", "--supernet", "{d}/no-supernet"], "no supernet checkpoint"),
    (["--strategy", "supernet", "--supernet-preset", "huge"], "supernet preset"),
    (["--strategy", "halving", "--supernet", "{d}/no-supernet"], "goes with strategy supernet"),
    (["--strategy", "halving", "--screen-fraction", "0"], "screen_fraction"),
    (["--strategy", "halving", "--screen-fraction", "1"], "strategy standalone"),  # the whole length
    (["--screen-fraction", "0.5"], "goes with strategy halving"),  # the study's standalone strategy ignores it
]


@pytest.fixture(scope="module")
def study_template(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("template") / "runs"
    run_search(SearchConfig(strategy="standalone", space="tiny", proxy="tiny", target_flops=60_000_000, population=2, study="keep",
                            n_trials=2, runs_dir=str(runs)), evaluate=fake_evaluate, quiet=True)
    return runs


@pytest.fixture
def existing_study(study_template, tmp_path) -> Path:
    """A fresh copy of a finished 2-trial study for each bad command to (not) touch."""
    return Path(shutil.copytree(study_template, tmp_path / "runs"))


@pytest.mark.parametrize("extra,word", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_search_input_is_one_line_exit_2_and_changes_nothing(extra, word, existing_study, bad_files, run_nas):
    before = _files(existing_study)
    extra = [arg.replace("{d}", str(bad_files)) for arg in extra]
    code, out, err = run_nas("search", *STUDY_ARGS, "--n-trials", "3", "--runs-dir", str(existing_study), *extra)
    assert code == 2
    assert "Traceback" not in err + out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and word in lines[0], err
    assert _files(existing_study) == before


@pytest.mark.parametrize("target", ["{d}/nothing-here", "{d}"])
def test_bad_report_input(target, bad_files, run_nas):
    before = _files(bad_files)
    code, out, err = run_nas("report", target.replace("{d}", str(bad_files)))
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _files(bad_files) == before


def test_the_bad_input_list_is_long_enough():
    assert len(BAD_INPUTS) >= 25
