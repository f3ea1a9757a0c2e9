"""A search study's outputs, regenerated from the study alone (atomically, so readers never see half a file).

runs/<study>/trials.csv    every trial: state, arch code, FLOPs, params, accuracy, reward, seconds, reason, choices
runs/<study>/pareto.csv    the completed trials on the (accuracy max, FLOPs min) Pareto front
runs/<study>/best.json     the selected spec (highest reward) with its evidence; what scaling and export read
runs/<study>/pareto.png    accuracy vs FLOPs: all trials, the front, the target, the selection, B0 when present
runs/<study>/summary.md    settings, counts, the selection against B0, the front, failures
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas._common.atomic import write_bytes_atomic, write_text_atomic
from nas._common.runfiles import BEST_FILE, STUDY_JOURNAL
from nas._common.tables import markdown_table
from nas.arch.efficientnet import efficientnet
from nas.arch.spec import Spec
from nas.errors import NasError
from nas.search.pareto import pareto_front
from nas.search.reward import Reward, make_reward
from nas.studies.runner import (
    FAIL_KIND_ATTR,
    REASON_ATTR,
    RETRY_ATTR,
    WORKER_ATTR,
    trial_seconds,
)
from nas.studies.storage import open_storage

CONFIG_ATTR = "search_config"  # written by nas.search.run.open_study
OUTPUT_FILES = ("trials.csv", "pareto.csv", BEST_FILE, "pareto.png", "summary.md")


def study_config(study: optuna.Study) -> dict[str, Any]:
    return dict(study.user_attrs.get(CONFIG_ATTR, {}))


def study_reward(config: dict[str, Any]) -> Reward:
    """The reward a study was run with, from its stored settings (the defaults where a setting is absent)."""
    return make_reward(**{key: config[key] for key in ("target_flops", "reward_weight", "hard_reward") if key in config})


# --- tables ------------------------------------------------------------------------------------------


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One flat row per trial (the content of trials.csv)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        history = attrs.get("val_acc_history")
        rows.append({
            "number": trial.number,
            "state": trial.state.name,
            "arch": attrs.get("arch"),
            "flops": attrs.get("flops"),
            "params": attrs.get("params"),
            "accuracy": attrs.get("accuracy"),
            "reward": attrs.get("reward"),
            "seconds": round(trial_seconds(trial), 2),
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
    return rows


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("accuracy") is not None and t.user_attrs.get("flops") is not None]


def front_trials(completed: list[FrozenTrial]) -> list[FrozenTrial]:
    points = [(t.user_attrs["accuracy"], t.user_attrs["flops"]) for t in completed]
    return [completed[i] for i in pareto_front(points)]


def selected_trial(completed: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial with the highest reward (ties: the earlier trial)."""
    if not completed:
        return None
    return max(completed, key=lambda t: (t.user_attrs["reward"], -t.number))


def b0_trial(completed: list[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial whose architecture is exactly EfficientNet-B0, if the study has one."""
    b0 = efficientnet("b0").replace(name="").to_dict()
    for trial in completed:
        if trial.user_attrs.get("spec") == b0:
            return trial
    return None


def _front_row(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {"number": trial.number, "arch": attrs["arch"], "flops": attrs["flops"], "params": attrs["params"],
            "accuracy": attrs["accuracy"], "reward": attrs["reward"]}


def best_document(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The content of best.json."""
    config = study_config(study)
    attrs = trial.user_attrs
    return {"spec": attrs["spec"], "reward": attrs["reward"], "accuracy": attrs["accuracy"],
            "flops": attrs["flops"], "params": attrs["params"], "trial": trial.number, "arch": attrs["arch"],
            "study": study.study_name, "seed": config.get("seed"), "dataset": config.get("data"),
            "proxy": config.get("proxy"), "space": config.get("space"), "target_flops": config.get("target_flops"),
            "reward_formula": study_reward(config).describe()}


# --- plot ----------------------------------------------------------------------------------------------


def pareto_png(study: optuna.Study, completed: list[FrozenTrial]) -> bytes:
    """Accuracy vs FLOPs: every completed trial, the front, the target, the selection and B0."""
    from matplotlib.figure import (
        Figure,  # no pyplot: no global backend state, safe in worker processes
    )

    config = study_config(study)
    figure = Figure(figsize=(7, 4.5), dpi=110)
    axes = figure.add_subplot()
    mflops = lambda t: t.user_attrs["flops"] / 1e6  # noqa: E731
    accuracy = lambda t: t.user_attrs["accuracy"]  # noqa: E731
    axes.scatter([mflops(t) for t in completed], [accuracy(t) for t in completed], s=18, c="0.6",
                 label=f"completed trials ({len(completed)})")
    front = front_trials(completed)
    if front:
        axes.plot([mflops(t) for t in front], [accuracy(t) for t in front], "o-", c="tab:blue", ms=5,
                  drawstyle="steps-post", label="Pareto front")
    if "target_flops" in config:
        axes.axvline(config["target_flops"] / 1e6, ls="--", c="tab:red",
                     label=f"target {config['target_flops'] / 1e6:g}M")
    best = selected_trial(completed)
    if best is not None:
        axes.scatter([mflops(best)], [accuracy(best)], marker="*", s=220, c="tab:orange", zorder=5,
                     label=f"selected (trial {best.number})")
    b0 = b0_trial(completed)
    if b0 is not None:
        axes.scatter([mflops(b0)], [accuracy(b0)], marker="D", s=60, facecolors="none", edgecolors="k",
                     zorder=6, label="EfficientNet-B0")
    axes.set_xlabel("FLOPs of the deployed network (M multiply-adds, 224x224x3, 1000 classes)")
    axes.set_ylabel("proxy validation accuracy")
    axes.set_title(f"study {study.study_name}: accuracy vs FLOPs")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.subplots_adjust(left=0.11, right=0.97, top=0.92, bottom=0.13)  # tight_layout would draw twice
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --- summary -----------------------------------------------------------------------------------------------


def summary_markdown(study: optuna.Study, completed: list[FrozenTrial]) -> str:
    config = study_config(study)
    trials = study.get_trials(deepcopy=False)
    states = {state: sum(t.state == state for t in trials) for state in TrialState}
    stale = sum(t.user_attrs.get(FAIL_KIND_ATTR) == "stale" for t in trials)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    train_s = sum(s for t in trials if not math.isnan(s := trial_seconds(t)))
    out = [f"# Search study `{study.study_name}`\n"]
    out.append(markdown_table([{"setting": key, "value": json.dumps(value)} for key, value in config.items()]))
    out.append(f"\nReward: {study_reward(config).describe()}.\n")
    out.append(f"\nTrials: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
               f"{states[TrialState.FAIL]} failed ({stale} of them stale workers, retried), "
               f"{states[TrialState.RUNNING]} running, {states[TrialState.WAITING]} waiting. "
               f"Wall time {wall:.0f} s (first start to last finish), {train_s:.0f} s of trial time.\n")
    best = selected_trial(completed)
    out.append("\n## Selected architecture\n\n")
    if best is None:
        out.append("No completed trial yet.\n")
    else:
        spec = Spec.from_dict(best.user_attrs["spec"])
        from nas.arch.describe import stage_rows

        out.append(f"Trial {best.number}: `{best.user_attrs['arch']}` (highest reward). Spec in best.json.\n\n")
        out.append(markdown_table(stage_rows(spec)))
        b0 = b0_trial(completed)
        rows = [{"model": f"selected (trial {best.number})", **_front_row(best)}]
        if b0 is not None:
            rows.append({"model": f"EfficientNet-B0 (trial {b0.number})", **_front_row(b0)})
        out.append("\n### Against EfficientNet-B0\n\n" if b0 is not None else "\n")
        out.append(markdown_table(rows))
    out.append("\n## Pareto front (accuracy max, FLOPs min)\n\n")
    out.append(markdown_table([_front_row(t) for t in front_trials(completed)]))
    unfinished = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    if unfinished:
        out.append("\n## Pruned and failed trials\n\n")
        out.append(markdown_table([{"number": t.number, "state": t.state.name, "flops": t.user_attrs.get("flops"),
                               "reason": t.user_attrs.get(REASON_ATTR)} for t in unfinished]))
    return "".join(out)


# --- all outputs -------------------------------------------------------------------------------------------


def write_outputs(study: optuna.Study, run_dir: str | os.PathLike[str], plot: bool = True) -> list[Path]:
    """(Re)write every output file of the study into `run_dir` (pareto.png only if `plot`); returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    completed = completed_trials(study)
    write_text_atomic(run_dir / "trials.csv", pd.DataFrame(trial_rows(study)).to_csv(index=False))
    front = [_front_row(t) for t in front_trials(completed)]
    columns = ["number", "arch", "flops", "params", "accuracy", "reward"]
    write_text_atomic(run_dir / "pareto.csv", pd.DataFrame(front, columns=columns).to_csv(index=False))
    written = [run_dir / "trials.csv", run_dir / "pareto.csv"]
    best = selected_trial(completed)
    if best is not None:
        write_text_atomic(run_dir / BEST_FILE, json.dumps(best_document(study, best), indent=2) + "\n")
        written.append(run_dir / BEST_FILE)
    write_text_atomic(run_dir / "summary.md", summary_markdown(study, completed))
    written.append(run_dir / "summary.md")
    if plot:
        write_bytes_atomic(run_dir / "pareto.png", pareto_png(study, completed))
        written.append(run_dir / "pareto.png")
    return written


def load_run_study(run_dir: str | os.PathLike[str], storage_url: str | None = None) -> optuna.Study:
    """The study of a run folder: its journal file (or `storage_url`), named after the folder."""
    run_dir = Path(run_dir)
    if storage_url is None and not (run_dir / STUDY_JOURNAL).is_file():
        raise NasError(f"{run_dir}: no {STUDY_JOURNAL} here: not a search run folder (or pass --storage URL)")
    storage = open_storage(storage_url, run_dir)
    names = optuna.get_all_study_names(storage)
    name = run_dir.name if run_dir.name in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise NasError(f"no study named {run_dir.name!r} in the storage (found: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage)
