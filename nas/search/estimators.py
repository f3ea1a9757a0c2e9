"""Accuracy estimators: what scores a candidate. One shape, `estimator(spec, record) -> accuracy`, where
`record(key, value)` keeps a piece of evidence on the trial (Optuna stays out of the estimators).

- `standalone`: train the candidate on the proxy task with the stand-alone preset (`config.proxy`); records
  the per-epoch validation accuracy and the CPU seconds. A custom accuracy source `evaluate(spec, on_epoch)`
  can take the trainer's place (tests, other proxies); one with a `num_classes` attribute has its trials
  checked for near-chance scores like the shipped source's.
- `halving`: the same training over `config.screen_fraction` of the preset's length (the screening run, the
  first rung of successive halving; the finalists get the whole length). A custom source is called as
  `evaluate(spec, on_epoch, fraction=config.screen_fraction)` for the screening run.
- `supernet`: score the candidate on a trained supernet (extraction, BN recalibration, validation accuracy);
  records the validation loss and the seconds the score took.

The data set is loaded when the estimator is made, once per worker, so a missing data set is reported
before any study is touched.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.arch.spec import Spec
from nas.search.config import SearchConfig

Record = Callable[[str, Any], None]
Estimator = Callable[[Spec, Record], float]
Evaluate = Callable[..., float]  # a custom accuracy source: (spec, on_epoch[, fraction=]) -> accuracy

SUPERNET_FOLDER = "supernet"  # inside the run folder, unless the settings name a trained one


class ProxyEvaluate:
    """The shipped stand-alone accuracy source: train the candidate on the proxy task, return its validation
    accuracy. `num_classes` is the data set's, for the evidence (a custom source may lack it)."""

    def __init__(self, config: SearchConfig, fraction: float = 1.0) -> None:
        from nas.model.device import resolve_device
        from nas.proxy.data import load_dataset
        from nas.proxy.presets import get_preset

        preset = get_preset(config.proxy).with_changes(**config.proxy_field_changes)
        self.preset = preset.shortened(fraction) if fraction < 1 else preset
        self.seed = config.seed
        self.device = resolve_device(config.device)  # a missing GPU fails here, before the study, like missing data
        self.data = load_dataset(config.data, subset=self.preset.subset, seed=config.seed,
                                 image_size=self.preset.resolution)
        self.num_classes = self.data.num_classes

    def __call__(self, spec: Spec, on_epoch: Callable[[Any], None]) -> float:
        from nas.proxy.trainer import train

        return train(spec, self.data, self.preset, seed=self.seed, on_epoch=on_epoch, device=self.device).val_acc


def proxy_evaluator(config: SearchConfig, fraction: float = 1.0) -> Evaluate:
    """The shipped accuracy source (`config.proxy` preset over `fraction` of its length, `config.seed` for the
    data split and the training)."""
    return ProxyEvaluate(config, fraction)


def standalone_estimator(config: SearchConfig, evaluate: Evaluate | None = None) -> Estimator:
    """Stand-alone training of every candidate (or `evaluate` in its place)."""
    evaluate = evaluate or proxy_evaluator(config)
    classes = getattr(evaluate, "num_classes", None)

    def estimate(spec: Spec, record: Record) -> float:
        history: list[float] = []

        def on_epoch(report: Any) -> None:
            history.append(float(report.val_acc))
            record("val_acc_history", list(history))  # per-epoch evidence (no pruner in MO studies)

        if classes:
            record("classes", classes)  # what chance is on this data set (the summary's warning)
        cpu_start = time.process_time()
        accuracy = float(evaluate(spec, on_epoch))
        # CPU seconds (all threads) next to the wall time: on a shared machine they tell the trial's real cost.
        record("cpu_seconds", round(time.process_time() - cpu_start, 2))
        return accuracy

    return estimate


def screening_estimator(config: SearchConfig, evaluate: Evaluate | None = None) -> Estimator:
    """Stand-alone training over `config.screen_fraction` of the proxy preset's length (or `evaluate`, told
    that share as `fraction=`: the same source must not score both rungs alike)."""
    if evaluate is None:
        return standalone_estimator(config, proxy_evaluator(config, config.screen_fraction))
    shortened = functools.partial(evaluate, fraction=config.screen_fraction)
    shortened.num_classes = getattr(evaluate, "num_classes", None)  # type: ignore[attr-defined]
    return standalone_estimator(config, shortened)


def supernet_folder(config: SearchConfig) -> Path:
    """Where the search's supernet lives: the folder the settings name, or the run folder's own."""
    return Path(config.supernet) if config.supernet else config.run_dir / SUPERNET_FOLDER


def supernet_estimator(config: SearchConfig, evaluate: Evaluate | None = None) -> Estimator:
    """Scores on the trained supernet in `supernet_folder(config)` (`evaluate` is not used)."""
    from nas.supernet.scoring import SupernetScorer, scoring_data
    from nas.supernet.training import load_supernet

    run = load_supernet(supernet_folder(config))
    data = scoring_data(run, config.data)
    scorer = SupernetScorer(run.supernet, data, run.preset.resolution, seed=config.seed, device=config.device)

    def estimate(spec: Spec, record: Record) -> float:
        score = scorer.score(spec)
        record("classes", run.supernet.num_classes)
        record("supernet_loss", round(score.loss, 5))
        record("score_seconds", round(score.seconds, 3))
        return score.accuracy

    return estimate


ESTIMATORS: dict[str, Callable[[SearchConfig, Evaluate | None], Estimator]] = {
    "halving": screening_estimator,
    "supernet": supernet_estimator,
    "standalone": standalone_estimator,
}
