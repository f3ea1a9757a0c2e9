"""The whole scaling stage from Python: coefficients (grid search, given, or published), then the family files.

    report = scale_base(efficientnet("b0"), Path("runs/scale-b0"), ScalingOptions())
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._common.runfiles import FAMILY_FOLDER, GRID_JOURNAL
from nas.arch.cost import count_flops
from nas.arch.spec import Spec
from nas.errors import NasError
from scaling.ablation import DEFAULT_BUDGETS, check_ablation_budgets, verdicts
from scaling.family import (
    PHIS,
    Member,
    budget_family,
    check_coefficients,
    compound_family,
    published_family,
)
from scaling.grid import DEFAULT_DEPTH_ROUNDING, GridPoint, flops_ratio, grid_points
from scaling.halving import DEFAULT_RUNGS, Rung, make_rungs
from scaling.outputs import (
    plot_scaling,
    write_ablation,
    write_family,
    write_grid,
    write_summary,
)

if TYPE_CHECKING:
    from scaling.grid_study import PointResult

GRID_STUDY = "scaling"
# The recipe every grid point, reference point and ablation network trains with; the rungs set its length.
DEFAULT_PROXY = "scale"
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)  # the paper's grid-search result, trained beside every grid


@dataclass(frozen=True)
class ScalingOptions:
    """How to scale: the grid (step, tolerance, constraint), the successive-halving rungs and the proxy
    recipe, or fixed coefficients; and whether to run the ablation against single-dimension scaling."""

    grid_step: float = 0.1
    tolerance: float = 0.1
    constraint: str = "nominal"
    depth_rounding: str = DEFAULT_DEPTH_ROUNDING
    data: str = "fashion-mnist"
    proxy: str = DEFAULT_PROXY  # a trainer preset name: the recipe and base resolution of every run
    rung_images: tuple[int, ...] = tuple(rung.images for rung in DEFAULT_RUNGS)
    final_seeds: int = DEFAULT_RUNGS[-1].seeds
    seed: int = 0
    storage: str | None = None  # an Optuna storage URL; None = the run folder's scaling.journal
    coefficients: tuple[float, float, float] | None = None  # given (alpha, beta, gamma): no grid search
    published: bool = False
    budgets: list[float] | None = None
    ablation: bool = False
    ablation_budgets: tuple[float, ...] = DEFAULT_BUDGETS
    progress: bool = False
    device: str | None = None  # where the grid points train (nas.model.device); None = auto
    keep_skips: bool = False  # scale the base as it is, stages without an identity skip included

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return make_rungs(self.rung_images, self.final_seeds)


@dataclass
class ScalingReport:
    """What the stage did: the chosen coefficients, the grid rows, the family rows and where they went."""

    folder: Path
    coefficients: tuple[float, float, float] | None
    grid: list[dict[str, Any]] = field(default_factory=list)
    family: list[dict[str, Any]] = field(default_factory=list)
    separation: str = ""  # whether the winner's lead exceeds the seed spread
    ablation: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # the ablation's line per budget
    seconds: float = 0.0
    unfinished: int = 0  # grid points still training in another process
    skips_added: list[int] = field(default_factory=list)  # stages (1-based) given the identity skip they lacked
    left_out: list[str] = field(default_factory=list)  # members past the spec's limits


def with_identity_skips(base: Spec) -> tuple[Spec, list[int]]:
    """The base with every stage's identity skip on, and the stages (1-based) that lacked it.

    Depth scaling repeats a stage's block, and in a stage without the skip the copies make a plain stack that
    does not train once deepened (README, "Scaling a baseline"; bench/bench_scaling_depth.py measures it).
    """
    lacking = [index + 1 for index, stage in enumerate(base.stages) if not stage.skip]
    if not lacking:
        return base, []
    stages = tuple(dataclasses.replace(stage, skip=True) for stage in base.stages)
    return dataclasses.replace(base, stages=stages), lacking


def _check_options(base: Spec, options: ScalingOptions) -> None:
    """Reject option combinations before any training, so a mistake costs no grid run."""
    if options.published and (options.budgets or options.coefficients):
        raise NasError("--published emits the published B1-B7 coefficients: it takes no --budgets, --alpha,"
                       " --beta or --gamma")
    if options.published and options.ablation:
        raise NasError("--ablation compares compound scaling by coefficients: it does not go with --published")
    if options.coefficients is not None:
        check_coefficients(*options.coefficients)
    options.rungs  # noqa: B018  (validates --rung-images and --final-seeds)
    if options.ablation:
        check_ablation_budgets(options.ablation_budgets)
    base_flops = count_flops(base)
    for budget in options.budgets or ():
        if budget < base_flops:
            raise NasError(f"--budgets entry {budget:.4g} is below the base network's {base_flops:,} FLOPs")


def grid_preset(options: ScalingOptions) -> Any:
    """The trainer preset whose recipe every run uses (resolution x gamma and the rung's length per run)."""
    from nas.proxy.presets import (
        get_preset,  # pulls in torch, which the family alone never needs
    )

    return get_preset(options.proxy)


def _storage(run_dir: Path, url: str | None, name: str) -> tuple[Any, str]:
    """A study's storage and name: the run folder's own journal, or a shared URL with a per-folder name."""
    from nas.studies.storage import (
        open_storage,  # Optuna: imported only when a grid runs
    )

    if url is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return open_storage(str(run_dir / GRID_JOURNAL), run_dir), name
    return open_storage(url, run_dir), f"{run_dir.name}-{name}"


def reference_point(base: Spec, points: list[GridPoint], depth_rounding: str) -> tuple[list[GridPoint], str, bool]:
    """The grid with the paper's point: (points, the paper's label, whether it was added beside the grid)."""
    alpha, beta, gamma = PAPER_COEFFICIENTS
    paper = GridPoint(alpha, beta, gamma, flops_ratio(base, alpha, beta, gamma, depth_rounding))
    if any(point.label == paper.label for point in points):
        return points, paper.label, False
    return [*points, paper], paper.label, True


def separation(results: list[PointResult], chosen: PointResult) -> str:
    """Whether the chosen point's lead over the runner-up of its rung exceeds the seed spread."""
    depth = len([a for a in chosen.rung_accuracies if a is not None])
    rivals = sorted((r for r in results if r is not chosen and not r.reference and r.state != "failed"
                     and len([a for a in r.rung_accuracies if a is not None]) == depth),
                    key=lambda r: -r.accuracy)
    if not rivals:
        return "no runner-up trained as long as the chosen point"
    second = rivals[0]
    spreads = [max(r.final_seeds) - min(r.final_seeds) for r in (chosen, second) if len(r.final_seeds) > 1]
    gap = chosen.accuracy - second.accuracy
    if not spreads:
        return (f"the chosen point leads the runner-up {second.point.label} by {100 * gap:.2f} points "
                "(one seed each: no spread measured)")
    spread = max(spreads)
    verdict = "more than" if gap > spread else "not more than"
    return (f"the chosen point leads the runner-up {second.point.label} by {100 * gap:.2f} points, {verdict} the "
            f"seed spread ({100 * spread:.2f} points over {len(chosen.final_seeds)} seeds)")


def search_coefficients(
    base: Spec, run_dir: Path, options: ScalingOptions
) -> tuple[tuple[float, float, float], list[dict[str, Any]], int, str]:
    """Run (or resume) the grid study; returns the chosen (alpha, beta, gamma), the grid rows, how many points
    are still unfinished (trained by another process right now) and the separation verdict."""
    from nas.model.device import resolve_device
    from nas.proxy.data import load_dataset
    from scaling.grid_study import (
        GridSettings,
        choose_point,
        collect_results,
        open_grid_study,
        run_grid,
    )
    from scaling.halving import proxy_resolution

    grid = grid_points(base, options.grid_step, options.tolerance, options.constraint, options.depth_rounding)
    points, paper, added = reference_point(base, grid, options.depth_rounding)
    settings = GridSettings(options.grid_step, options.tolerance, options.constraint, options.depth_rounding,
                            options.data, grid_preset(options), options.seed, options.rungs)
    resolve_device(options.device)  # a missing GPU, like bad or missing data, fails before a study exists
    # A folder is decoded once at the largest resolution a point trains at (the trainer resizes down).
    largest = max(proxy_resolution(settings.proxy, point.gamma) for point in points)
    data = load_dataset(options.data, seed=options.seed, image_size=largest)
    storage, study_name = _storage(run_dir, options.storage, GRID_STUDY)
    study = open_grid_study(storage, study_name, base, points, settings)
    reference = paper if added else None
    run_grid(study, base, points, data, settings, reference=reference, always=paper, progress=options.progress,
             device=options.device)
    results = collect_results(study, points, settings, reference)
    best = choose_point(results)
    rows = [result.row(chosen=result is best) for result in results]
    unfinished = sum(result.state in ("running", "pending") for result in results)
    return (best.point.alpha, best.point.beta, best.point.gamma), rows, unfinished, separation(results, best)


def run_ablation_stage(base: Spec, run_dir: Path, options: ScalingOptions,
                       coefficients: tuple[float, float, float]) -> tuple[list[dict[str, Any]], list[str]]:
    """Compound scaling by `coefficients` against depth-, width- and resolution-only scaling of the base at
    the ablation's FLOPs budgets, each trained like the grid's final rung under `final_seeds` seeds."""
    from nas.proxy.data import load_dataset
    from scaling.ablation import (
        ABLATION_STUDY,
        AblationSettings,
        ablation_rows,
        networks,
        open_ablation_study,
        run_ablation,
    )
    from scaling.halving import proxy_resolution

    final = options.rungs[-1]
    settings = AblationSettings(base, tuple(coefficients), tuple(options.ablation_budgets), final.seeds,
                                options.data, grid_preset(options), final, options.depth_rounding)
    largest = max(proxy_resolution(settings.proxy, network.resolution) for network in networks(settings))
    data = load_dataset(options.data, seed=options.seed, image_size=largest)
    storage, name = _storage(run_dir, options.storage, ABLATION_STUDY)
    study = open_ablation_study(storage, name, settings)
    scaled = run_ablation(study, settings, data, options.seed, device=options.device)
    rows = ablation_rows(study, scaled)
    return rows, verdicts(rows)


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
    """Find or take the coefficients, derive the family and write run_dir/family/ (specs, csvs, plot).

    Unless `options.keep_skips`, the base is scaled with every stage's identity skip on (`with_identity_skips`).
    """
    _check_options(base, options)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    report = ScalingReport(folder=run_dir / FAMILY_FOLDER, coefficients=options.coefficients)
    if not options.keep_skips:
        base, report.skips_added = with_identity_skips(base)
    if not options.published and options.coefficients is None:
        report.coefficients, report.grid, report.unfinished, report.separation = search_coefficients(
            base, run_dir, options)
    members = derive_family(base, report.coefficients, options)
    if not (options.published or options.budgets):
        emitted = {member.phi for member in members}
        report.left_out = [f"b{phi}" for phi in PHIS if phi not in emitted]
    report.family = write_family(report.folder, members)
    if report.grid:
        write_grid(report.folder, report.grid)
    plot_scaling(report.folder / "scaling.png", report.grid, report.family)
    if options.ablation:
        assert report.coefficients is not None
        report.ablation, report.verdicts = run_ablation_stage(base, run_dir, options, report.coefficients)
        write_ablation(report.folder, report.ablation)
    report.seconds = time.perf_counter() - started
    write_summary(report.folder / "summary.md", report)
    return report
