"""The whole scaling stage from Python: coefficients (grid search, given, or published), then the family files.

    report = scale_base(efficientnet("b0"), Path("runs/scale-b0"), ScalingOptions())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas._common.runfiles import FAMILY_FOLDER, GRID_JOURNAL
from nas.arch.cost import count_flops
from nas.arch.spec import Spec
from nas.errors import NasError
from scaling.family import (
    PHIS,
    Member,
    budget_family,
    check_coefficients,
    compound_family,
    published_family,
)
from scaling.grid import DEFAULT_DEPTH_ROUNDING, grid_points
from scaling.outputs import plot_scaling, write_family, write_grid

GRID_STUDY = "scaling"
# The default grid point: the trainer's 'scale' preset cut to 4 epochs on 12,000 images (43k training images
# of a ~2x-B0 network at 32-40 pixels), so the default three-point grid fits 15 minutes on 2 cores.
DEFAULT_PROXY = "scale"
DEFAULT_PROXY_CHANGES = {"epochs": 4, "subset": 12000}


@dataclass(frozen=True)
class ScalingOptions:
    """How to scale: the grid (step, tolerance, constraint), the proxy task, or fixed coefficients."""

    grid_step: float = 0.25
    tolerance: float = 0.1
    constraint: str = "nominal"
    depth_rounding: str = DEFAULT_DEPTH_ROUNDING
    data: str = "fashion-mnist"
    proxy: str | None = None  # a trainer preset name; None = DEFAULT_PROXY shortened by DEFAULT_PROXY_CHANGES
    epochs: int | None = None  # per grid point, overriding the preset's
    subset: int | None = None  # images (train + validation) per grid point, overriding the preset's
    seed: int = 0
    storage: str | None = None  # an Optuna storage URL; None = the run folder's scaling.journal
    coefficients: tuple[float, float, float] | None = None  # given (alpha, beta, gamma): no grid search
    published: bool = False
    budgets: list[float] | None = None
    progress: bool = False
    device: str | None = None  # where the grid points train (nas.model.device); None = auto


@dataclass
class ScalingReport:
    """What the stage did: the chosen coefficients, the grid rows, the family rows and where they went."""

    folder: Path
    coefficients: tuple[float, float, float] | None
    grid: list[dict[str, Any]] = field(default_factory=list)
    family: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    unfinished: int = 0  # grid points still training in another process
    left_out: list[str] = field(default_factory=list)  # members past the spec's limits


def _check_options(base: Spec, options: ScalingOptions) -> None:
    """Reject option combinations before any training, so a mistake costs no grid run."""
    if options.published and (options.budgets or options.coefficients):
        raise NasError("--published emits the published B1-B7 coefficients: it takes no --budgets, --alpha,"
                       " --beta or --gamma")
    if options.coefficients is not None:
        check_coefficients(*options.coefficients)
    base_flops = count_flops(base)
    for budget in options.budgets or ():
        if budget < base_flops:
            raise NasError(f"--budgets entry {budget:.4g} is below the base network's {base_flops:,} FLOPs")


def grid_preset(options: ScalingOptions) -> Any:
    """The trainer preset each grid point trains with (the gamma-scaled resolution is applied per point)."""
    from nas.proxy.presets import (
        get_preset,  # pulls in torch, which the family alone never needs
    )

    if options.proxy is None:
        preset = get_preset(DEFAULT_PROXY).with_changes(**DEFAULT_PROXY_CHANGES)
    else:
        preset = get_preset(options.proxy)
    return preset.with_changes(epochs=options.epochs, subset=options.subset)


def _grid_storage(run_dir: Path, url: str | None) -> tuple[Any, str]:
    """The study storage and name: the run folder's own journal, or a shared URL with a per-folder name."""
    from nas.studies.storage import (
        open_storage,  # Optuna: imported only when a grid runs
    )

    if url is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return open_storage(str(run_dir / GRID_JOURNAL), run_dir), GRID_STUDY
    return open_storage(url, run_dir), f"{run_dir.name}-{GRID_STUDY}"


def search_coefficients(
    base: Spec, run_dir: Path, options: ScalingOptions
) -> tuple[tuple[float, float, float], list[dict[str, Any]], int]:
    """Run (or resume) the grid study; returns the chosen (alpha, beta, gamma), the grid rows and how
    many points are still unfinished (trained by another process right now)."""
    from nas.model.device import resolve_device
    from nas.proxy.data import load_dataset
    from scaling.grid_study import (
        GridSettings,
        choose_point,
        collect_results,
        open_grid_study,
        proxy_resolution,
        run_grid,
    )

    points = grid_points(base, options.grid_step, options.tolerance, options.constraint, options.depth_rounding)
    preset = grid_preset(options)
    settings = GridSettings(options.grid_step, options.tolerance, options.constraint, options.depth_rounding,
                            options.data, preset, options.seed)
    resolve_device(options.device)  # a missing GPU, like bad or missing data, fails before a study exists
    # A folder is decoded once at the largest resolution a point trains at (the trainer resizes down).
    largest = max((proxy_resolution(preset, point.gamma) for point in points), default=preset.resolution)
    data = load_dataset(options.data, seed=options.seed, image_size=largest)
    storage, study_name = _grid_storage(run_dir, options.storage)
    study = open_grid_study(storage, study_name, base, points, settings)
    run_grid(study, base, points, data, settings, progress=options.progress, device=options.device)
    results = collect_results(study, points, preset)
    best = choose_point(results)
    rows = [result.row(chosen=result is best) for result in results]
    unfinished = sum(result.val_acc is None and result.state != "diverged" for result in results)
    return (best.point.alpha, best.point.beta, best.point.gamma), rows, unfinished


def derive_family(
    base: Spec, coefficients: tuple[float, float, float] | None, options: ScalingOptions
) -> list[Member]:
    """The family: published multipliers, members fitted to FLOPs budgets, or phi = 1..7."""
    if options.published:
        return published_family(base)
    assert coefficients is not None
    if options.budgets:
        return budget_family(base, *coefficients, options.budgets, options.depth_rounding)
    return compound_family(base, *coefficients, options.depth_rounding)


def scale_base(base: Spec, run_dir: Path, options: ScalingOptions) -> ScalingReport:
    """Find or take the coefficients, derive the family and write run_dir/family/ (specs, csvs, plot)."""
    _check_options(base, options)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    report = ScalingReport(folder=run_dir / FAMILY_FOLDER, coefficients=options.coefficients)
    if not options.published and options.coefficients is None:
        report.coefficients, report.grid, report.unfinished = search_coefficients(base, run_dir, options)
    members = derive_family(base, report.coefficients, options)
    if not (options.published or options.budgets):
        emitted = {member.phi for member in members}
        report.left_out = [f"b{phi}" for phi in PHIS if phi not in emitted]
    report.family = write_family(report.folder, members)
    if report.grid:
        write_grid(report.folder, report.grid)
    plot_scaling(report.folder / "scaling.png", report.grid, report.family)
    report.seconds = time.perf_counter() - started
    return report
