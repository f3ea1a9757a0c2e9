"""What the scaling stage writes to runs/<study>/family/: member specs, family.csv, grid.csv, scaling.png,
summary.md, and with the ablation ablation.csv and ablation.png.

Every file is written atomically (temp file + os.replace), so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from nas._common.atomic import atomic_path, write_text_atomic
from nas.arch.cost import count_flops
from nas.arch.spec import save_spec
from scaling.family import Member


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with a header from the first row's keys (every row has the same keys)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def family_rows(members: Sequence[Member]) -> list[dict[str, Any]]:
    """One row per member; the FLOPs ratio is to the first member (the base, phi 0)."""
    base_flops = count_flops(members[0].spec)
    return [member.row(base_flops) for member in members]


def write_family(folder: Path, members: Sequence[Member]) -> list[dict[str, Any]]:
    """Write <name>.json for every member and family.csv; returns the csv rows.

    Member files of an earlier family in the folder (say b1..b7 before a --budgets run) are removed after the
    new ones are written, so readers of the folder (the exporter) never see two families mixed.
    """
    names = {f"{member.name}.json" for member in members}
    for member in members:
        save_spec(member.spec, folder / f"{member.name}.json")
    for stale in folder.glob("*.json"):
        if stale.name not in names:
            stale.unlink()
    rows = family_rows(members)
    write_text_atomic(folder / "family.csv", csv_text(rows))
    return rows


def write_grid(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    write_text_atomic(folder / "grid.csv", csv_text(rows))


def plot_scaling(path: Path, grid: Sequence[dict[str, Any]], family: Sequence[dict[str, Any]]) -> None:
    """Left: grid points at (beta, gamma), alpha written beside them, coloured by their rung-0 accuracy (the
    one every point has), ringed by how far they got. Right: the family's FLOPs ratio to the base against 2^phi."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    if grid:
        x, rank = _dodged_beta(grid)
        trained = [i for i, row in enumerate(grid) if row.get("rung0_acc", "") != ""]
        untrained = [i for i, row in enumerate(grid) if row.get("rung0_acc", "") == ""]
        rungs = [i for i in range(8) if f"rung{i}_acc" in grid[0]]
        if trained:
            reached = [max(r for r in rungs if grid[i][f"rung{r}_acc"] != "") for i in trained]
            dots = left.scatter([x[i] for i in trained], [grid[i]["gamma"] for i in trained],
                                c=[grid[i]["rung0_acc"] for i in trained], cmap="viridis", s=90,
                                edgecolors="black", linewidths=[0.5 + 1.5 * r for r in reached])
            figure.colorbar(dots, ax=left, label="rung-0 validation accuracy (ring: rung reached)")
        if untrained:
            left.scatter([x[i] for i in untrained], [grid[i]["gamma"] for i in untrained],
                         facecolors="none", edgecolors="grey", s=90, label="not trained / failed")
            left.legend(loc="upper right")
        for row, position, k in zip(grid, x, rank):
            marker = " *" if row.get("chosen") else (" (paper)" if row.get("reference") else "")
            left.annotate(f"a={row['alpha']:g}{marker}", (position, row["gamma"]),
                          textcoords="offset points", xytext=(6, 4 - 11 * k), fontsize=8)
        left.margins(0.2)  # room for the labels of the outermost points
        left.set_title("grid at phi = 1 (a = alpha, * = chosen)")
    else:
        left.text(0.5, 0.5, "no grid search (coefficients given)", ha="center", va="center")
        left.set_title("grid at phi = 1")
    left.set_xlabel("beta (width)")
    left.set_ylabel("gamma (resolution)")

    phis = [row["phi"] for row in family]
    right.plot(phis, [row["flops_ratio"] for row in family], "o-", label="actual FLOPs ratio (rounded)")
    right.plot(phis, [2.0**phi for phi in phis], "--", color="grey", label="2^phi")
    right.set_yscale("log", base=2)
    right.set_xlabel("phi")
    right.set_ylabel("FLOPs / base FLOPs")
    right.set_title("family FLOPs growth")
    right.legend()
    figure.tight_layout()
    _save_figure_atomic(figure, path)
    plt.close(figure)


def write_ablation(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """ablation.csv and ablation.png (accuracy against FLOPs, one line per method)."""
    from scaling.ablation import plot_ablation

    write_text_atomic(folder / "ablation.csv", csv_text(rows))
    plot_ablation(folder / "ablation.png", list(rows))


def skips_sentence(stages: Sequence[int]) -> str:
    """What the stage did to a base whose stages lacked the identity skip (`with_identity_skips`)."""
    return (f"The base's stage(s) {', '.join(map(str, stages))} had no identity skip: the base was scaled with it "
            "on (family/b0.json is that base), since a plain stage deepened does not train (--keep-skips scales "
            "the base as it is).")


def write_summary(path: Path, report: Any) -> None:
    """summary.md: the coefficients and how they were found, the grid, the family, the ablation's verdicts."""
    from nas._common.tables import markdown_table

    out = ["# Scaling\n\n"]
    if report.coefficients:
        alpha, beta, gamma = report.coefficients
        how = "chosen by the grid search" if report.grid else "given"
        out.append(f"Coefficients ({how}): alpha = {alpha:g}, beta = {beta:g}, gamma = {gamma:g} "
                   f"(alpha x beta^2 x gamma^2 = {alpha * beta**2 * gamma**2:.3f}).\n")
    else:
        out.append("Coefficients: the published B1-B7 multipliers.\n")
    if report.skips_added:
        out.append(f"\n{skips_sentence(report.skips_added)}\n")
    if report.separation:
        out.append(f"\nAgainst the seed spread: {report.separation}.\n")
    if report.grid:
        paper = [row for row in report.grid if row.get("reference") or
                 (row["alpha"], row["beta"], row["gamma"]) == (1.2, 1.1, 1.15)]
        if paper and paper[0]["val_acc"] != "":
            out.append(f"\nThe paper's point (1.2, 1.1, 1.15), trained beside the grid: validation accuracy "
                       f"{paper[0]['val_acc']} ({paper[0]['state']}).\n")
        failed = [row for row in report.grid if row["state"] == "failed"]
        out.append(f"\n## Grid at phi = 1 ({len(report.grid)} points, successive halving"
                   f"{f'; {len(failed)} failed to train and cannot win' if failed else ''})\n\n")
        out.append(markdown_table(list(report.grid)))
    if report.verdicts:
        out.append("\n## Compound against single-dimension scaling (ablation.csv, ablation.png)\n\n")
        out.append("".join(f"- {line}\n" for line in report.verdicts))
        out.append("\n" + markdown_table(list(report.ablation)))
    out.append("\n## Family\n\n")
    out.append(markdown_table(list(report.family)))
    if report.left_out:
        out.append(f"\nLeft out {', '.join(report.left_out)}: past the spec's limits.\n")
    write_text_atomic(path, "".join(out))


def _dodged_beta(grid: Sequence[dict[str, Any]]) -> tuple[list[float], list[int]]:
    """beta per point, shifted apart where several alphas share one (beta, gamma) so no dot hides another,
    and each point's rank among those sharing its place (to stack their labels)."""
    shared: dict[tuple[float, float], list[int]] = {}
    for index, row in enumerate(grid):
        shared.setdefault((row["beta"], row["gamma"]), []).append(index)
    x, rank = [float(row["beta"]) for row in grid], [0] * len(grid)
    for indices in shared.values():
        for k, index in enumerate(indices):
            x[index] += (k - (len(indices) - 1) / 2) * 0.03
            rank[index] = k
    return x, rank


def _save_figure_atomic(figure: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=110)
