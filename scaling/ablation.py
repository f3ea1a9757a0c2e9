"""The paper's central claim on the user's data (its Figure 8 and Table 3): at the same FLOPs, scaling the base
in depth, width and resolution together (compound) against scaling one dimension alone.

At each FLOPs budget (multiples of the base's FLOPs, 2x and 4x by default) every method scales the same base to
that budget within `FLOPS_MATCH` (each method's own multiplier found by bisection, the rounding of channels and
repeats included), and each network trains with the same proxy run under several seeds. Trials run through the
shared study runner, in a study of their own beside the grid study, so the ablation resumes and shares work
between processes like the grid.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from dataclasses import dataclass
from typing import Any

from nas.arch.cost import count_flops
from nas.arch.spec import Spec
from nas.errors import NasError
from scaling.grid import scale_point
from scaling.halving import Rung, did_train, proxy_resolution, rung_data

METHODS = ("compound", "depth", "width", "resolution")
DEFAULT_BUDGETS = (2.0, 4.0)
FLOPS_MATCH = 0.05  # every method's network within 5% of the budget's FLOPs
ABLATION_STUDY = "ablation"
SETTINGS_ATTR = "ablation_settings"
BISECTION_STEPS = 60

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scaled:
    """One method's network at one budget: its multipliers (depth, width, resolution) and FLOPs ratio."""

    method: str
    budget: float
    depth: float
    width: float
    resolution: float
    spec: Spec
    flops_ratio: float


def _multipliers(method: str, x: float, coefficients: tuple[float, float, float]) -> tuple[float, float, float]:
    alpha, beta, gamma = coefficients
    return {"compound": (alpha**x, beta**x, gamma**x), "depth": (x, 1.0, 1.0), "width": (1.0, x, 1.0),
            "resolution": (1.0, 1.0, x)}[method]


def scale_to_budget(base: Spec, method: str, budget: float, coefficients: tuple[float, float, float],
                    depth_rounding: str) -> Scaled:
    """The base scaled by `method` to `budget` x its FLOPs: the multiplier (phi for compound) whose rounded
    network comes nearest the budget; NasError when rounding leaves it further than FLOPS_MATCH."""
    base_flops = count_flops(base)

    def ratio(x: float) -> float:
        depth, width, resolution = _multipliers(method, x, coefficients)
        return count_flops(scale_point(base, depth, width, resolution, depth_rounding)) / base_flops

    low, high = (0.0, 1.0) if method == "compound" else (1.0, 2.0)
    while ratio(high) < budget:
        low, high = high, high * 2 if method == "compound" else 1 + (high - 1) * 2
    best = high
    for _ in range(BISECTION_STEPS):  # FLOPs rise in steps with x: keep the nearest point seen
        middle = (low + high) / 2
        value = ratio(middle)
        if abs(value - budget) < abs(ratio(best) - budget):
            best = middle
        low, high = (middle, high) if value < budget else (low, middle)
    for candidate in (low, high):
        if abs(ratio(candidate) - budget) < abs(ratio(best) - budget):
            best = candidate
    achieved = ratio(best)
    if abs(achieved / budget - 1) > FLOPS_MATCH:
        raise NasError(f"{method} scaling cannot reach {budget:g}x the base's FLOPs within {FLOPS_MATCH:.0%} "
                       f"(nearest {achieved:.3f}x): the rounding of channels and repeats is too coarse here")
    depth, width, resolution = _multipliers(method, best, coefficients)
    spec = scale_point(base, depth, width, resolution, depth_rounding)
    return Scaled(method, budget, depth, width, resolution, spec, achieved)


@dataclass(frozen=True)
class AblationSettings:
    base: Spec
    coefficients: tuple[float, float, float]
    budgets: tuple[float, ...]
    seeds: int
    data: str
    proxy: Any  # the ProxyPreset whose recipe every network trains with
    rung: Rung  # the training run every network gets
    depth_rounding: str

    def to_json(self) -> str:
        settings = dataclasses.asdict(self)
        settings["base"] = self.base.to_dict()
        return json.dumps(settings, sort_keys=True)


def networks(settings: AblationSettings) -> list[Scaled]:
    """The base (budget 1) and every method at every budget."""
    base = Scaled("base", 1.0, 1.0, 1.0, 1.0, settings.base, 1.0)
    return [base] + [scale_to_budget(settings.base, method, budget, settings.coefficients, settings.depth_rounding)
                     for budget in settings.budgets for method in METHODS]


def _key(network: Scaled) -> str:
    return f"{network.method}@{network.budget:g}"


def run_ablation(study: Any, settings: AblationSettings, data: Any, seed: int,
                 heartbeat_s: float = 10.0, device: str | None = None) -> list[Scaled]:
    """Train every network of the ablation under `settings.seeds` seeds (this process's share of them) on
    `device` (nas.model.device)."""
    import optuna

    from nas.proxy.trainer import train
    from nas.studies.runner import run_trials

    scaled = networks(settings)
    by_key = {_key(network): network for network in scaled}

    def objective(trial: Any) -> list[float]:
        network = by_key[trial.suggest_categorical("network", list(by_key))]
        run_seed = trial.suggest_int("seed", 0, 2**31 - 1)
        preset = settings.proxy.with_changes(resolution=proxy_resolution(settings.proxy, network.resolution),
                                             epochs=settings.rung.epochs)
        result = train(network.spec, rung_data(data, settings.rung), dataclasses.replace(preset, subset=None),
                       seed=run_seed, device=device)
        last = result.history[-1]
        log.info("ablation %s at %gx the base's FLOPs, seed %d (%d px): loss %.3f val_acc %.4f in %.0f s",
                 network.method, network.budget, run_seed, preset.resolution, last.train_loss, last.val_acc,
                 result.seconds)
        failure = did_train(result.history, data.num_classes)
        if failure:
            raise RuntimeError(failure)  # reported as a failed run; its accuracy is not evidence
        trial.set_user_attr("seconds", result.seconds)
        return [result.val_acc]

    study.sampler = optuna.samplers.RandomSampler(seed=seed)
    for network in scaled:
        for k in range(settings.seeds):
            study.enqueue_trial({"network": _key(network), "seed": seed + k}, skip_if_exists=True)
    run_trials(study, objective, n_trials=len(scaled) * settings.seeds, heartbeat_s=heartbeat_s, queued_only=True)
    return scaled


def open_ablation_study(storage: Any, name: str, settings: AblationSettings) -> Any:
    """Create the ablation's study, or load it if it holds the same ablation (NasError otherwise)."""
    from nas.studies.storage import create_or_load_study

    study = create_or_load_study(storage, name, ("maximize",))
    stored, wanted = study.user_attrs.get(SETTINGS_ATTR), settings.to_json()
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
    elif stored != wanted:
        raise NasError(f"study {name!r} holds an ablation with other settings (base, coefficients, budgets, "
                       "seeds, data, proxy; the base is scaled with identity skips unless --keep-skips): pass the "
                       "same ones, or another --study")
    return study


def ablation_rows(study: Any, scaled: list[Scaled]) -> list[dict[str, Any]]:
    """One row per network: method, budget, multipliers, FLOPs ratio, accuracy per seed, mean and spread."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rows = []
    for network in scaled:
        runs = [t for t in trials if t.params.get("network") == _key(network)]
        values = [t.value for t in sorted(runs, key=lambda t: t.params["seed"])
                  if t.state == TrialState.COMPLETE and t.value is not None]
        failed = sum(t.state == TrialState.FAIL for t in runs)
        rows.append({"method": network.method, "budget": network.budget, "depth": round(network.depth, 4),
                     "width": round(network.width, 4), "resolution_multiplier": round(network.resolution, 4),
                     "flops": count_flops(network.spec), "flops_ratio": round(network.flops_ratio, 4),
                     "seed_accs": " ".join(f"{v:.4f}" for v in values),
                     "val_acc": round(statistics.fmean(values), 5) if values else "",
                     "spread": round(max(values) - min(values), 5) if len(values) > 1 else "",
                     "failed_runs": failed})
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """One line per budget: which method won, by how much, against the seed spread."""
    lines = []
    for budget in sorted({row["budget"] for row in rows if row["method"] != "base"}):
        at = [row for row in rows if row["budget"] == budget and row["val_acc"] != ""]
        if len(at) < 2:
            lines.append(f"{budget:g}x FLOPs: not every method has trained yet")
            continue
        ranked = sorted(at, key=lambda row: -row["val_acc"])
        winner, second = ranked[0], ranked[1]
        # The spread of the two compared: a third method's unsteady seeds say nothing about these two.
        spreads = [row["spread"] for row in (winner, second) if row["spread"] != ""]
        gap = winner["val_acc"] - second["val_acc"]
        lead = (f"{budget:g}x FLOPs: {winner['method']} scaling wins ({winner['val_acc']:.4f}) over "
                f"{second['method']} ({second['val_acc']:.4f}) by {100 * gap:.2f} points")
        if not spreads:
            lines.append(f"{lead} (one seed each: no spread measured)")
            continue
        verdict = "more than" if gap > max(spreads) else "within"
        lines.append(f"{lead}, {verdict} the larger seed spread of the two ({100 * max(spreads):.2f} points)")
    return lines


def plot_ablation(path: Any, rows: list[dict[str, Any]]) -> None:
    """Accuracy against FLOPs, one line per method from the base, as the paper's Figure 8."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from nas._common.atomic import atomic_path

    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    base = [row for row in rows if row["method"] == "base" and row["val_acc"] != ""]
    for method in METHODS:
        points = base + sorted((row for row in rows if row["method"] == method and row["val_acc"] != ""),
                               key=lambda row: row["budget"])
        if len(points) > len(base):
            axes.plot([row["flops"] / 1e9 for row in points], [row["val_acc"] for row in points], "o-",
                      label=f"{method} scaling" if method != "compound" else "compound scaling")
    axes.set_xlabel("FLOPs of the deployed network (B multiply-adds)")
    axes.set_ylabel("proxy validation accuracy (mean over seeds)")
    axes.set_title("scaling the base: compound vs one dimension")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)


def check_ablation_budgets(budgets: tuple[float, ...]) -> None:
    if not budgets or any(not budget > 1 for budget in budgets):
        raise NasError("--ablation-budgets needs multiples of the base's FLOPs above 1, e.g. 2,4")
