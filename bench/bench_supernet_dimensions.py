"""Which choice dimension breaks a trained supernet's scores: the largest network changed in one dimension at
a time (every stage) to the smallest's choice and to B0's, each scored as the search scores candidates.

The sandwich trains its two ends at every step; a network between them shares their weights. If the largest
scores well and the largest with one dimension moved does not, that dimension's weight sharing is what the
training has not reached. Usage (FOLDER: a trained supernet, e.g. runs/<study>/supernet):

    python bench/bench_supernet_dimensions.py FOLDER
"""

from __future__ import annotations

import argparse

from nas._common.tables import print_table
from nas.arch.cost import count_flops
from nas.arch.efficientnet import efficientnet
from nas.arch.space import SearchSpace, decode, encode
from nas.errors import NasError
from nas.supernet.scoring import SupernetScorer, scoring_data
from nas.supernet.training import largest_spec, load_supernet, smallest_spec

# The skip is left out: both ends (and B0) keep every identity skip; "without any skip" is scored on its own.
DIMENSIONS = ("block", "kernel", "expand", "se", "filters", "layers")


def moved(space: SearchSpace, largest: dict, other: dict, dimension: str, smallest: bool) -> dict:
    """The largest's choices with `dimension` taken from `other` in every stage.

    An MBConv of ratio 1 is the depthwise-separable block (the `block` row), so an expansion moves only where
    `other` has an expanding MBConv; toward the smallest it moves to the smallest ratio that still expands."""
    params = dict(largest)
    for i, stage in enumerate(space.stages, start=1):
        key = f"s{i}_{dimension}"
        if dimension != "expand":
            params[key] = other[key]
        elif smallest:
            params[key] = min((ratio for ratio in stage.expand if ratio > 1), default=largest[key])
        elif other[f"s{i}_block"] == "mbconv":
            params[key] = other[key]
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a trained supernet's folder")
    args = parser.parse_args()
    run = load_supernet(args.folder)
    space = run.supernet.space
    scorer = SupernetScorer(run.supernet, scoring_data(run), run.preset.resolution)
    largest = encode(space, largest_spec(space))
    others = {"smallest": encode(space, smallest_spec(space))}
    try:
        others["B0"] = encode(space, efficientnet("b0").replace(name=""))
    except NasError:
        pass  # B0 is not in this space
    scored: dict[str, str] = {}

    def score(params: dict) -> str:
        spec = decode(space, params)
        text = spec.to_json()
        if text not in scored:
            scored[text] = f"{scorer.score(spec).accuracy:.3f} ({count_flops(spec) / 1e6:.0f}M)"
        return scored[text]

    print(f"supernet {args.folder}: {run.steps_done} steps; largest {score(largest)}; "
          + "; ".join(f"{name} {score(params)}" for name, params in others.items()), flush=True)
    rows = []
    for dimension in DIMENSIONS:
        row = {"dimension": dimension}
        for name, params in others.items():
            change = moved(space, largest, params, dimension, smallest=name == "smallest")
            row[f"largest with {name}'s"] = score(change) if change != largest else "same"
        rows.append(row)
    print_table(rows)
    if all("none" in stage.skip for stage in space.stages):
        plain = {key: ("none" if key.endswith("_skip") else value) for key, value in largest.items()}
        print(f"largest without any identity skip: {score(plain)}")


if __name__ == "__main__":
    main()
