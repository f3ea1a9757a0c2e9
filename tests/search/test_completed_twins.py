"""An architecture already trained in the study is not trained again: its accuracy is taken from its twin."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from nas.search.run import run_search
from tests.search.test_search import config, fake_evaluate

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = """
name = "four"
[network]
head_channels = 64
[choices]
block = ["mbconv"]
kernel = [3, 5]
expand = [3]
se_ratio = [0.0, 0.25]
skip = ["identity"]
filters = [1.0]
layers = [0]
[[stages]]
filters = 16
layers = 1
stride = 2
"""


def test_each_architecture_is_trained_once_and_repeats_take_its_accuracy(tmp_path):
    trained = []

    def counting_evaluate(spec, on_epoch):
        trained.append(spec.to_json())
        return fake_evaluate(spec, on_epoch)

    # A space of four architectures: twelve random draws repeat some.
    space = tmp_path / "four.toml"
    space.write_text(SPACE)
    study = run_search(config(tmp_path, n_trials=12, sampler="random", space=str(space)), evaluate=counting_evaluate,
                       quiet=True)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    repeats = [t for t in complete if "duplicate_of" in t.user_attrs]
    assert repeats
    by_number = {t.number: t for t in complete}
    for trial in repeats:
        twin = by_number[trial.user_attrs["duplicate_of"]]
        assert "duplicate_of" not in twin.user_attrs and twin.user_attrs["spec"] == trial.user_attrs["spec"]
        assert trial.user_attrs["accuracy"] == twin.user_attrs["accuracy"]
        assert trial.values == twin.values and trial.user_attrs["reward"] == twin.user_attrs["reward"]
    assert len(trained) == len(set(trained)) == len(complete) - len(repeats)
    assert {json.dumps(t.user_attrs["spec"], sort_keys=True) for t in complete} == \
        {json.dumps(json.loads(text), sort_keys=True) for text in trained}
