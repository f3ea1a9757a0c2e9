"""A search study's outputs, regenerated from the study alone (atomically, so readers never see half a file).

runs/<study>/trials.csv    every trial: state, arch code, FLOPs, params (latency_ms with the latency objective),
                           accuracy and reward (by the study's estimator, named in `estimator`), seconds,
                           reason, choices; with a staged strategy (halving, supernet) also the finalists'
                           stand-alone accuracy and reward
runs/<study>/pareto.csv    the completed trials on the (accuracy max, cost min) Pareto front
runs/<study>/best.json     the selected spec with its evidence; what scaling and export read
runs/<study>/pareto.png    accuracy vs the cost (FLOPs or predicted latency): all trials, the front, the target,
                           finalists, the selection, B0
runs/<study>/summary.md    settings, phases, counts, the selection against B0, the finalists, the front, failures

With a staged strategy the selection is the finalist with the highest reward of its stand-alone accuracy (its
first score, the screening accuracy or the supernet score, sits beside it as screen_acc or supernet_acc); with
the stand-alone strategy, the trial with the highest reward.
"""

from __future__ import annotations

import io
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas._common.atomic import write_bytes_atomic, write_text_atomic
from nas._common.runfiles import BEST_FILE, STUDY_JOURNAL
from nas._common.tables import markdown_table
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.search.config import STRATEGIES, Strategy, proxy_label, stored_cost, stored_reward
from nas.search.cost import SearchCost
from nas.search.finalists import FINALISTS_SUFFIX, SOURCE_ATTR, load_finalists
from nas.search.ranking import kendall_tau
from nas.search.reward import Reward
from nas.search.selection import (
    b0_trial,
    completed_trials,
    front_trials,
    selected_trial,
)
from nas.studies.runner import (
    FAIL_KIND_ATTR,
    REASON_ATTR,
    RETRY_ATTR,
    WORKER_ATTR,
    trial_seconds,
)
from nas.studies.storage import open_storage

CONFIG_ATTR = "search_config"  # written by nas.search.run.open_study
SUPERNET_RUN_ATTR = "supernet_run"  # the supernet's folder, steps and training seconds (nas.search.run)
OUTPUT_FILES = ("trials.csv", "pareto.csv", BEST_FILE, "pareto.png", "summary.md")
FAILURES_LISTED = 20  # pruned and failed trials named in summary.md; the rest are in trials.csv


def study_config(study: optuna.Study) -> dict[str, Any]:
    return dict(study.user_attrs.get(CONFIG_ATTR, {}))


def study_reward(config: dict[str, Any]) -> Reward:
    """The reward a study was run with, from its stored settings (the defaults where a setting is absent)."""
    return stored_reward(config)


@dataclass
class Evidence:
    """Everything the outputs show, gathered from the study (and its finalists study) once per write."""

    study: optuna.Study
    config: dict[str, Any]
    trials: list[FrozenTrial]
    completed: list[FrozenTrial]
    finalists: list[FrozenTrial] = field(default_factory=list)  # completed stand-alone retrainings
    finalist_of: dict[int, FrozenTrial] = field(default_factory=dict)  # search trial number -> its finalist

    @property
    def strategy(self) -> str:
        return self.config.get("strategy", "standalone")

    @property
    def strategy_info(self) -> Strategy:
        return STRATEGIES[self.strategy]

    @property
    def staged(self) -> bool:
        """Finalists retrained stand-alone after the first scores (halving, supernet)."""
        return self.strategy_info.staged

    @property
    def supernet(self) -> bool:
        return self.strategy == "supernet"

    @property
    def score_column(self) -> str:
        """The first score's column prefix in the outputs of a staged strategy (screen, supernet)."""
        return self.strategy_info.column

    @property
    def cost(self) -> SearchCost:
        """The cost the study minimised beside accuracy (FLOPs or predicted latency)."""
        return stored_cost(self.config)

    @property
    def selected(self) -> FrozenTrial | None:
        """The trial whose spec is best.json: a finalist (staged strategy) or a search trial."""
        return selected_trial(self.finalists if self.staged else self.completed)

    @property
    def b0(self) -> FrozenTrial | None:
        """EfficientNet-B0's trial among the selectable ones, when it was evaluated."""
        return b0_trial(self.finalists if self.staged else self.completed)

    def search_trial(self, trial: FrozenTrial) -> FrozenTrial:
        """The search trial behind a finalist (itself for the stand-alone strategy)."""
        number = trial.user_attrs.get(SOURCE_ATTR)
        return next((t for t in self.completed if t.number == number), trial) if self.staged else trial


def gather(study: optuna.Study) -> Evidence:
    trials = study.get_trials(deepcopy=False)
    evidence = Evidence(study, study_config(study), trials, completed_trials(trials))
    finalists_study = load_finalists(study) if evidence.staged else None
    if finalists_study is not None:
        evidence.finalists = completed_trials(finalists_study.get_trials(deepcopy=False))
        evidence.finalist_of = {t.user_attrs[SOURCE_ATTR]: t for t in evidence.finalists}
    return evidence


# --- tables ------------------------------------------------------------------------------------------


def trial_rows(evidence: Evidence) -> list[dict[str, Any]]:
    """One flat row per trial (the content of trials.csv)."""
    rows = []
    for trial in evidence.trials:
        attrs = trial.user_attrs
        history = attrs.get("val_acc_history")
        row = {
            "number": trial.number,
            "state": trial.state.name,
            "arch": attrs.get("arch"),
            "flops": attrs.get("flops"),
            "params": attrs.get("params"),
            **evidence.cost.kind.columns(attrs),
            "estimator": evidence.strategy,
            "accuracy": attrs.get("accuracy"),
            "reward": attrs.get("reward"),
        }
        if evidence.supernet:
            row["supernet_loss"] = attrs.get("supernet_loss")
        if evidence.staged:
            final = evidence.finalist_of.get(trial.number)
            row.update({"finalist": final is not None,
                        "standalone_acc": final.user_attrs["accuracy"] if final else None,
                        "standalone_reward": final.user_attrs["reward"] if final else None})
        row.update({
            "seconds": round(trial_seconds(trial), 3),
            "cpu_seconds": attrs.get("cpu_seconds"),
            "reason": attrs.get(REASON_ATTR),
            "fail_kind": attrs.get(FAIL_KIND_ATTR),
            "enqueued": attrs.get("enqueued"),
            "retry_of": attrs.get(RETRY_ATTR),
            "duplicate_of": attrs.get("duplicate_of"),
            "worker": attrs.get(WORKER_ATTR),
            "val_acc_history": ";".join(f"{v:.4f}" for v in history) if history else None,
            **trial.params,
        })
        rows.append(row)
    return rows


def _row(evidence: Evidence, trial: FrozenTrial, label: str | None = None) -> dict[str, Any]:
    """A trial's key figures; with a staged strategy both scores when it was retrained."""
    source = evidence.search_trial(trial)
    attrs = source.user_attrs
    row = {"model": label} if label else {}
    row.update({"number": source.number, "arch": attrs["arch"], "flops": attrs["flops"], "params": attrs["params"],
                **evidence.cost.kind.columns(attrs)})
    if not evidence.staged:
        return {**row, "accuracy": attrs["accuracy"], "reward": attrs["reward"]}
    final = trial if trial is not source else evidence.finalist_of.get(source.number)
    column = evidence.score_column
    return {**row, f"{column}_acc": attrs["accuracy"], f"{column}_reward": attrs["reward"],
            "standalone_acc": final.user_attrs["accuracy"] if final else None,
            "standalone_reward": final.user_attrs["reward"] if final else None}


def best_document(evidence: Evidence, trial: FrozenTrial) -> dict[str, Any]:
    """The content of best.json: the selected spec and its evidence."""
    config, source, cost = evidence.config, evidence.search_trial(trial), evidence.cost
    attrs = trial.user_attrs
    document = {"spec": attrs["spec"], "reward": attrs["reward"], "accuracy": attrs["accuracy"],
                "flops": attrs["flops"], "params": attrs["params"], "trial": source.number, "arch": attrs["arch"],
                "study": evidence.study.study_name, "strategy": evidence.strategy, "seed": config.get("seed"),
                "dataset": config.get("data"), "proxy": config.get("proxy"),
                "proxy_changes": config.get("proxy_changes", []), "space": config.get("space"),
                "target_flops": config.get("target_flops"), "reward_formula": study_reward(config).describe(),
                "objective": cost.kind.key}
    if cost.kind.attr not in document:  # the latency objective: the prediction, its target and its table
        document.update({cost.kind.attr: cost.of(attrs), f"target_{cost.kind.key}": cost.target,
                         "latency_table": config.get("latency_table")})
    if evidence.staged:
        column = evidence.score_column
        document.update({"accuracy_source": f"stand-alone training ({proxy_label(config)} preset)",
                         f"{column}_acc": source.user_attrs["accuracy"],
                         f"{column}_reward": source.user_attrs["reward"], "finalist_trial": trial.number,
                         "selected_by": "highest reward of the finalists' stand-alone accuracies"})
    return document


# --- plot ----------------------------------------------------------------------------------------------


def pareto_png(evidence: Evidence) -> bytes:
    """Accuracy vs the study's cost (FLOPs or predicted latency): every completed trial, the front, the target,
    the finalists, the selection, B0."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global backend state, safe in worker processes
    )

    figure = Figure(figsize=(7.5, 4.8), dpi=110)
    axes = figure.add_subplot()
    cost = evidence.cost
    scaled = lambda t: cost.of(t.user_attrs) / cost.kind.scale  # noqa: E731  (M FLOPs, or ms)
    accuracy = lambda t: t.user_attrs["accuracy"]  # noqa: E731
    score = evidence.strategy_info.score
    completed = evidence.completed
    axes.scatter([scaled(t) for t in completed], [accuracy(t) for t in completed], s=8 if evidence.supernet else 18,
                 c="0.65", label=f"candidates, {score} ({len(completed)})")
    front = front_trials(completed, cost.kind.attr)
    if front:
        axes.plot([scaled(t) for t in front], [accuracy(t) for t in front], "o-", c="tab:blue", ms=4,
                  drawstyle="steps-post", label=f"Pareto front ({score})")
    if evidence.finalists:
        for final in evidence.finalists:
            source = evidence.search_trial(final)
            axes.plot([scaled(source)] * 2, [accuracy(source), accuracy(final)], c="tab:green", lw=0.8, alpha=0.6)
        axes.scatter([scaled(t) for t in evidence.finalists], [accuracy(t) for t in evidence.finalists],
                     marker="s", s=40, c="tab:green", zorder=4,
                     label=f"finalists, stand-alone accuracy ({len(evidence.finalists)})")
    axes.axvline(cost.target / cost.kind.scale, ls="--", c="tab:red", label=f"target {cost.kind.plain(cost.target)}")
    best = evidence.selected
    if best is not None:
        axes.scatter([scaled(best)], [accuracy(best)], marker="*", s=220, c="tab:orange", zorder=5,
                     label=f"selected (trial {evidence.search_trial(best).number})")
    b0 = evidence.b0
    if b0 is not None:
        axes.scatter([scaled(b0)], [accuracy(b0)], marker="D", s=60, facecolors="none", edgecolors="k",
                     zorder=6, label="EfficientNet-B0")
    axes.set_xlabel(cost.kind.axis)
    axes.set_ylabel("validation accuracy")
    axes.set_title(f"study {evidence.study.study_name}: accuracy vs {cost.kind.name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.13)  # tight_layout would draw twice
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- summary -----------------------------------------------------------------------------------------------


def _counts(trials: list[FrozenTrial]) -> str:
    states = {state: sum(t.state == state for t in trials) for state in TrialState}
    stale = sum(t.user_attrs.get(FAIL_KIND_ATTR) == "stale" for t in trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    busy = sum(s for t in trials if not math.isnan(s := trial_seconds(t)))
    return (f"{states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
            f"{states[TrialState.FAIL]} failed ({stale} of them stale workers, retried), "
            f"{states[TrialState.RUNNING]} running, {states[TrialState.WAITING]} waiting. "
            f"Wall time {wall:.0f} s (first start to last finish), {busy:.0f} s of trial time")


def _finalists_section(evidence: Evidence) -> list[str]:
    score, column = evidence.strategy_info.score, evidence.score_column
    out = [f"\n## Finalists: {score} against stand-alone training\n\n"]
    if not evidence.finalists:
        return out + ["No finalist has been retrained yet.\n"]
    cost = evidence.cost
    finalists = sorted(evidence.finalists, key=lambda t: cost.of(evidence.search_trial(t).user_attrs))
    rows = [_row(evidence, t, "EfficientNet-B0" if t is evidence.b0 else ("selected" if t is evidence.selected
                                                                          else None)) for t in finalists]
    out.append(markdown_table(rows))
    if len(evidence.finalists) >= 3:
        tau = kendall_tau([r[f"{column}_acc"] for r in rows], [r["standalone_acc"] for r in rows])
        out.append(f"\nKendall tau between the {score} and the stand-alone accuracy over these "
                   f"{len(rows)} finalists: {tau:.2f} (few points: a rough check; bench/bench_supernet_ranking.py "
                   "measures it on 31 architectures against the seed-to-seed noise).\n")
    return out


def _target_section(evidence: Evidence) -> list[str]:
    """How the selection sits against the target, said plainly when the reward prefers a far smaller network."""
    cost, kind = evidence.cost, evidence.cost.kind
    best, pool = evidence.selected, (evidence.finalists if evidence.staged else evidence.completed)
    if best is None or len(pool) < 2:
        return []
    low, high = cost.window
    near = [t for t in pool if low <= cost.of(t.user_attrs) <= high]
    accuracies = [t.user_attrs["accuracy"] for t in pool]
    spread = max(accuracies) - min(accuracies)
    out = ["\n## Against the target\n\n"]
    value = cost.of(best.user_attrs)
    where = ("inside" if low <= value <= high else "below" if value < low else "above")
    out.append(f"The selected network has {kind.amount(value)}, {where} the {kind.plain(low)}-{kind.plain(high)} "
               f"window around the {kind.plain(cost.target)} target. ")
    if near:
        top = max(near, key=lambda t: t.user_attrs["accuracy"])
        out.append(f"{len(near)} of the {len(pool)} {'finalists' if evidence.staged else 'candidates'} lie "
                   f"inside the window; the most accurate of them is trial {evidence.search_trial(top).number} "
                   f"({kind.amount(cost.of(top.user_attrs))}, accuracy {top.user_attrs['accuracy']:.4f}, "
                   f"reward {top.user_attrs['reward']:.4f}). ")
    beaten = bool(near) and top.user_attrs["accuracy"] > best.user_attrs["accuracy"]  # by one in the window
    if value < low and not beaten:
        out.append("No network inside the window is more accurate: the selection is below it on accuracy alone.")
    elif value < low:
        out.append(f"The reward prefers a network far below the target because accuracy is flat on this task: "
                   f"the {'finalists' if evidence.staged else 'candidates'}' accuracies span only "
                   f"{100 * spread:.1f} points, so the {kind.name} term "
                   f"(w = {evidence.config.get('reward_weight', -0.07)}) decides. On a harder task, or with the "
                   "hard reward, the target would bind.")
    return out + ["\n"]


# What to lengthen when most first scores sit at chance, by strategy: (what they are, the remedy).
_CHANCE_REMEDY = {
    "halving": ("screening runs", "`--screen-fraction 0.5`, or a longer `--proxy`"),
    "supernet": ("supernet scores", "`--supernet-preset long`, or `--strategy halving`"),
    "standalone": ("proxy runs", "a longer `--proxy`"),
}


def chance_warning(evidence: Evidence) -> str | None:
    """A sentence when at least half the candidates' first scores are near chance (nas.proxy.chance): the
    search then followed noise, however many candidates it saw. None otherwise, or before 4 candidates."""
    from nas.proxy.chance import CHANCE_MULTIPLE, near_chance

    scored = [t for t in evidence.completed if "classes" in t.user_attrs]  # a custom source records none
    if len(scored) < 4:
        return None
    classes = int(scored[0].user_attrs["classes"])
    at_chance = sum(near_chance(t.values[0], classes) for t in scored)
    if 2 * at_chance < len(scored):
        return None
    what, remedy = _CHANCE_REMEDY[evidence.strategy_info.name]
    return (f"{at_chance} of {len(scored)} {what} ended near chance (accuracy at most {CHANCE_MULTIPLE:g} / "
            f"{classes}): too short to rank candidates on this data set, so the search followed noise. "
            f"Lengthen them ({remedy}).")


def summary_markdown(evidence: Evidence) -> str:
    config, study = evidence.config, evidence.study
    out = [f"# Search study `{study.study_name}`\n"]
    out.append(markdown_table([{"setting": key, "value": json.dumps(value)} for key, value in config.items()]))
    out.append(f"\nReward: {study_reward(config).describe()}.\n")
    if evidence.supernet:
        run = study.user_attrs.get(SUPERNET_RUN_ATTR)
        if run:
            out.append(f"\nPhase 1, supernet: {run['steps']} training steps in {run['seconds']:.0f} s "
                       f"(`{run['folder']}`).\n")
        seconds = [t.user_attrs["score_seconds"] for t in evidence.completed if "score_seconds" in t.user_attrs]
        median = f", median {statistics.median(seconds):.3f} s per score" if seconds else ""
        out.append(f"\nPhase 2, candidates scored on the supernet: {_counts(evidence.trials)}{median}.\n")
    elif evidence.staged:
        out.append(f"\nPhase 1, screening runs ({config.get('screen_fraction')} of the {proxy_label(config)} "
                   f"preset's length each): {_counts(evidence.trials)}.\n")
    warning = chance_warning(evidence)
    if warning:
        out.append(f"\n**Warning:** {warning}\n")
    if evidence.staged:
        final_study = load_finalists(study)
        if final_study is not None:
            number = 3 if evidence.supernet else 2
            out.append(f"\nPhase {number}, finalists retrained stand-alone: "
                       f"{_counts(final_study.get_trials(deepcopy=False))}.\n")
    else:
        out.append(f"\nTrials: {_counts(evidence.trials)}.\n")
    best = evidence.selected
    out.append("\n## Selected architecture\n\n")
    if best is None:
        out.append("No completed trial yet.\n" if not evidence.staged else "No finalist retrained yet.\n")
    else:
        from nas.arch.describe import stage_rows

        how = ("highest reward of the finalists' stand-alone accuracies" if evidence.staged
               else "highest reward")
        out.append(f"Trial {evidence.search_trial(best).number}: `{best.user_attrs['arch']}` ({how}). "
                   "Spec in best.json.\n\n")
        out.append(markdown_table(stage_rows(Spec.from_dict(best.user_attrs["spec"]))))
        rows = [_row(evidence, best, "selected")]
        b0 = evidence.b0
        if b0 is not None:
            rows.append(_row(evidence, b0, "EfficientNet-B0"))
        out.append("\n### Against EfficientNet-B0\n\n" if b0 is not None else "\n")
        out.append(markdown_table(rows))
    out += _target_section(evidence)
    if evidence.staged:
        out += _finalists_section(evidence)
    kind = evidence.cost.kind
    score = evidence.strategy_info.score if evidence.staged else "accuracy"
    out.append(f"\n## Pareto front ({score} max, {kind.name} min)\n\n")
    out.append(markdown_table([_row(evidence, t) for t in front_trials(evidence.completed, kind.attr)]))
    unfinished = [t for t in evidence.trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    if unfinished:
        out.append(f"\n## Pruned and failed trials ({len(unfinished)}"
                   f"{f'; the first {FAILURES_LISTED}, the rest in trials.csv' if len(unfinished) > FAILURES_LISTED else ''})\n\n")
        out.append(markdown_table([{"number": t.number, "state": t.state.name, "flops": t.user_attrs.get("flops"),
                                    **kind.columns(t.user_attrs), "reason": t.user_attrs.get(REASON_ATTR)}
                                   for t in unfinished[:FAILURES_LISTED]]))
    return "".join(out)


# --- all outputs -------------------------------------------------------------------------------------------


def write_outputs(study: optuna.Study, run_dir: str | os.PathLike[str], plot: bool = True) -> list[Path]:
    """(Re)write every output file of the study into `run_dir` (pareto.png only if `plot`); returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    evidence = gather(study)
    write_text_atomic(run_dir / "trials.csv", pd.DataFrame(trial_rows(evidence)).to_csv(index=False))
    front = [_row(evidence, t) for t in front_trials(evidence.completed, evidence.cost.kind.attr)]
    columns = list(_row(evidence, evidence.completed[0])) if evidence.completed else ["number"]
    write_text_atomic(run_dir / "pareto.csv", pd.DataFrame(front, columns=columns).to_csv(index=False))
    written = [run_dir / "trials.csv", run_dir / "pareto.csv"]
    best = evidence.selected
    if best is not None:
        write_text_atomic(run_dir / BEST_FILE, json.dumps(best_document(evidence, best), indent=2) + "\n")
        written.append(run_dir / BEST_FILE)
    write_text_atomic(run_dir / "summary.md", summary_markdown(evidence))
    written.append(run_dir / "summary.md")
    if plot:
        write_bytes_atomic(run_dir / "pareto.png", pareto_png(evidence))
        written.append(run_dir / "pareto.png")
    return written


def load_run_study(run_dir: str | os.PathLike[str], storage_url: str | None = None) -> optuna.Study:
    """The search study of a run folder: its journal file (or `storage_url`), named after the folder."""
    run_dir = Path(run_dir)
    if storage_url is None and not (run_dir / STUDY_JOURNAL).is_file():
        raise NasError(f"{run_dir}: no {STUDY_JOURNAL} here: not a search run folder (or pass --storage URL)")
    storage = open_storage(storage_url, run_dir)
    names = [name for name in optuna.get_all_study_names(storage) if not name.endswith(FINALISTS_SUFFIX)]
    name = run_dir.name if run_dir.name in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise NasError(f"no study named {run_dir.name!r} in the storage (found: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)
