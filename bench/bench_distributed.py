"""Training speed of DistributedDataParallel on this machine's cores: `nas train --nproc 2` (two gloo
processes, one thread each) against one process with all the threads, at the same global batch.

Each measurement is a real `nas train` run of B0 with the `search` preset cut to two epochs of a
Fashion-MNIST subset (the second epoch's images/s is read from its metrics.json, so that process start and
one-off costs stay out); the runs alternate so that load from other jobs hits both alike. Usage:

    python bench/bench_distributed.py [--subset 6000] [--rounds 2] [--nproc 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def nas_train(out: Path, subset: int, batch: int, threads: int, nproc: int) -> float:
    """Images/s of the second epoch of one `nas train` run."""
    argv = [sys.executable, "-m", "nas", "train", "b0", "--preset", "search", "--epochs", "2", "--subset", str(subset),
            "--batch-size", str(batch), "--threads", str(threads), "--device", "cpu", "--out", str(out)]
    if nproc > 1:
        argv += ["--nproc", str(nproc)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())["history"][-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=6000, help="Fashion-MNIST images (train + validation)")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    single, ddp = [], []
    print(f"B0, search preset, 2 epochs of {args.subset} Fashion-MNIST images, global batch {args.batch}, "
          f"{cores} cores: 1 process x {cores} threads against {args.nproc} processes x "
          f"{max(1, cores // args.nproc)} thread(s) (second epoch's img/s)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.rounds):
            single.append(nas_train(Path(scratch) / f"one-{r}", args.subset, args.batch, cores, 1))
            ddp.append(nas_train(Path(scratch) / f"ddp-{r}", args.subset, args.batch // args.nproc,
                                 max(1, cores // args.nproc), args.nproc))
            print(f"round {r + 1}: 1 process {single[-1]:.0f} img/s, {args.nproc} processes {ddp[-1]:.0f} img/s",
                  flush=True)
    one, many = statistics.median(single), statistics.median(ddp)
    print(f"median: 1 process {one:.0f} img/s, {args.nproc} processes (DDP, gloo) {many:.0f} img/s, "
          f"ratio {many / one:.2f}x")


if __name__ == "__main__":
    main()
