"""Pareto fronts and hypervolume of (accuracy, FLOPs) points: accuracy maximised, FLOPs minimised."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (accuracy, flops) points, by increasing FLOPs.

    A point is dominated when another has accuracy >= and FLOPs <= with at least one strict; of exact
    duplicates only the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front: list[int] = []
    best_accuracy = float("-inf")
    for i in order:
        if points[i][0] > best_accuracy:
            front.append(i)
            best_accuracy = points[i][0]
    return front


def hypervolume(points: Sequence[tuple[float, float]], ref_flops: float, ref_accuracy: float = 0.0) -> float:
    """Area dominated by the points and bounded by the reference point (ref_accuracy, ref_flops).

    Units: accuracy x FLOPs; points with FLOPs >= ref_flops or accuracy <= ref_accuracy add nothing.
    """
    inside = [p for p in points if p[1] < ref_flops and p[0] > ref_accuracy]
    area = 0.0
    front = [inside[i] for i in pareto_front(inside)]  # increasing FLOPs and increasing accuracy
    for k, (accuracy, flops) in enumerate(front):
        next_flops = front[k + 1][1] if k + 1 < len(front) else ref_flops
        # Between this point's FLOPs and the next one's, this point's accuracy is the best available.
        area += (accuracy - ref_accuracy) * (next_flops - flops)
    return area
