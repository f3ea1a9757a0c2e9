"""A staged strategy's last phase (halving, supernet): the Pareto candidates around the target (and the
enqueued models, B0 as the reference) retrained stand-alone with the stand-alone preset.

They run as a study of their own beside the search study, in the same storage (`<study>-finalists`), one
enqueued trial per finalist carrying the search trial it came from and its first score (`screen_acc` or
`supernet_acc`); so the phase resumes after a kill and shares work between workers exactly like the search.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.search.config import DIRECTIONS, STRATEGIES, SearchConfig
from nas.search.selection import ENQUEUED_ATTR, choose_finalists, completed_trials
from nas.studies.storage import create_or_load_study

FINALISTS_SUFFIX = "-finalists"
SOURCE_ATTR = "source_trial"  # the search trial a finalist was chosen from


def finalists_study_name(study_name: str) -> str:
    return study_name + FINALISTS_SUFFIX


def load_finalists(study: optuna.Study) -> optuna.Study | None:
    """The finalists study beside a search study, if it exists."""
    name = finalists_study_name(study.study_name)
    if name not in optuna.get_all_study_names(study._storage):
        return None
    return optuna.load_study(study_name=name, storage=study._storage)


def prepare_finalists(config: SearchConfig, search: optuna.Study) -> tuple[optuna.Study, int]:
    """Create (or load) the finalists study and enqueue the finalists the search's trials choose now; returns
    the study and its budget: every distinct finalist ever enqueued that has not failed for good."""
    cost = config.cost
    chosen = choose_finalists(completed_trials(search.get_trials(deepcopy=False)), cost.window, cost.target,
                              config.finalists, cost.kind.attr)
    study = create_or_load_study(search._storage, finalists_study_name(search.study_name), DIRECTIONS)
    column = STRATEGIES[config.strategy].column
    for trial in chosen:
        attrs = {SOURCE_ATTR: trial.number, f"{column}_acc": trial.user_attrs["accuracy"],
                 f"{column}_reward": trial.user_attrs["reward"]}
        if trial.user_attrs.get(ENQUEUED_ATTR):
            attrs[ENQUEUED_ATTR] = trial.user_attrs[ENQUEUED_ATTR]
        study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=True)
    return study, _budget(study.get_trials(deepcopy=False))


def _budget(trials: list[FrozenTrial]) -> int:
    keys = {repr(sorted(t.system_attrs.get("fixed_params", t.params).items()))
            for t in trials if t.state != TrialState.FAIL}
    return max(1, len(keys))
