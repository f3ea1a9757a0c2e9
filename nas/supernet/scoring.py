"""Scoring a candidate on a trained supernet: extract its weights into the ordinary network that
`build_model(spec)` builds (the module export writes), recompute its BatchNorm statistics on a fixed set of
training images, and measure its accuracy and loss on the validation split.

The calibration images and the validation images are prepared once (resized, normalised, channels-last), so
a score costs one extraction, one forward pass over the calibration images and one over the validation set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nas.arch.spec import Spec
from nas.errors import NasError
from nas.model.batchnorm import recalibrate_batchnorm
from nas.model.builder import EfficientNet, model_from_state, skip_unreachable_taps
from nas.model.device import resolve_device
from nas.model.inference import fold_batchnorm
from nas.proxy.augment import channel_stats, normalize, resize_images
from nas.proxy.data import ProxyData
from nas.supernet.network import Supernet

if TYPE_CHECKING:
    from nas.supernet.training import SupernetRun


def scoring_data(run: SupernetRun, source: str | None = None) -> ProxyData:
    """The data a trained supernet scores on: `source` (default: the data set it trained on) split with its
    seed, so its validation images are ones it never trained on, and cut to its preset's subset."""
    from nas.proxy.data import load_dataset

    source = source or run.identity.get("data_source")
    if not source:
        raise NasError("the supernet's checkpoint does not record its data set")
    data = load_dataset(source, seed=run.identity["seed"])
    return data if run.preset.subset is None else data.limit(run.preset.subset)


@dataclass(frozen=True)
class ScoringSettings:
    """How a candidate is scored. Once-for-all recalibrates on 2,000 images; the defaults take far fewer, since
    every image is time spent per candidate and the default search scores 1,000 of them (what fewer images cost
    in ranking: bench_supernet_ranking.py --scoring-val)."""

    calibration_images: int = 256
    calibration_batch: int = 256
    val_images: int | None = 500  # the first of the validation split (None: all of it)
    eval_batch: int = 1000


@dataclass(frozen=True)
class Score:
    """A candidate's supernet score: validation accuracy (fraction) and mean cross-entropy."""

    accuracy: float
    loss: float
    seconds: float


class SupernetScorer:
    """Scores specs of the supernet's space on `data` at `resolution` (the supernet's training resolution)."""

    def __init__(self, supernet: Supernet, data: ProxyData, resolution: int,
                 settings: ScoringSettings | None = None, seed: int = 0,
                 device: str | torch.device | None = "cpu") -> None:
        self.device = resolve_device(device)
        self.supernet, self.resolution = supernet.eval().to(self.device), resolution
        self.settings = settings or ScoringSettings()
        train_x = resize_images(data.train_x, resolution)
        self.mean, self.std = channel_stats(train_x)
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
        calibration = normalize(train_x[order[:self.settings.calibration_images]], self.mean, self.std).to(self.device)
        self.calibration = calibration.split(self.settings.calibration_batch)
        val_x, self.val_y = data.val_x, data.val_y
        if self.settings.val_images is not None:
            val_x, self.val_y = val_x[:self.settings.val_images], self.val_y[:self.settings.val_images]
        self.val_x = normalize(resize_images(val_x, resolution), self.mean, self.std).to(self.device)
        self.val_y = self.val_y.to(self.device)

    def network(self, spec: Spec) -> EfficientNet:
        """The ordinary network of `spec` (a deployed-shape spec of the space) with its supernet weights and
        recalibrated BatchNorm statistics, in eval mode, at the scorer's input shape."""
        fitted = self.supernet.fit(spec, self.resolution)
        model = model_from_state(fitted, self.supernet.extract(fitted))
        model = skip_unreachable_taps(model).to(self.device, memory_format=torch.channels_last)  # the BN pass runs in train mode
        return recalibrate_batchnorm(model, self.calibration)

    @torch.no_grad()
    def score(self, spec: Spec) -> Score:
        """Validation accuracy and loss of `spec`'s extracted, recalibrated network, run in its inference form
        (BN folded into the convs: the same function, fewer passes over memory)."""
        started = time.perf_counter()
        model = fold_batchnorm(self.network(spec))
        correct, loss = 0, 0.0
        for start in range(0, len(self.val_x), self.settings.eval_batch):
            logits = model(self.val_x[start:start + self.settings.eval_batch])
            labels = self.val_y[start:start + self.settings.eval_batch]
            correct += int((logits.argmax(1) == labels).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        n = len(self.val_x)
        return Score(correct / n, loss / n, time.perf_counter() - started)
