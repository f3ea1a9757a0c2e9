"""Supernet training: seeded, resumable exactly after a kill, refusing a checkpoint of other settings; and the
scorer: an extracted network's BN statistics recomputed, its accuracy as the trainer's own evaluation gives."""

from __future__ import annotations

import random

import pytest
import torch

from nas.arch.cost import count_flops
from nas.arch.space import load_space
from nas.errors import NasError
from nas.proxy.augment import resize_images
from nas.proxy.data import load_dataset
from nas.proxy.trainer import evaluate
from nas.supernet.scoring import ScoringSettings, SupernetScorer
from nas.supernet.training import (
    CHECKPOINT_FILE,
    get_supernet_preset,
    largest_spec,
    load_supernet,
    random_spec_in_window,
    smallest_spec,
    train_supernet,
)

WINDOW = (20e6, 60e6)  # the tiny space's deployed FLOPs span about 10M to 110M


@pytest.fixture(scope="module")
def data():
    return load_dataset("fashion-mnist", subset=400, seed=0)


def weights(run) -> dict[str, torch.Tensor]:
    return run.supernet.state_dict()


def test_sandwich_ends_span_the_space():
    """The smallest has the fewest FLOPs of all; the largest (the MBConv path at every largest choice) the most
    of every architecture without regular-conv stages, whose weights are a separate path."""
    space = load_space("tiny")
    rng = random.Random(0)
    drawn = [random_spec_in_window(space, (0, 1e12), rng) for _ in range(200)]
    assert count_flops(smallest_spec(space)) <= min(map(count_flops, drawn))
    mbconv_only = [spec for spec in drawn if all(stage.block != "conv" for stage in spec.stages)]
    assert mbconv_only and count_flops(largest_spec(space)) >= max(map(count_flops, mbconv_only))
    assert all(WINDOW[0] <= count_flops(random_spec_in_window(space, WINDOW, rng)) <= WINDOW[1] for _ in range(20))


def test_seeded_training_repeats_and_a_killed_run_resumes_exactly(tmp_path, data):
    space, preset = load_space("tiny"), get_supernet_preset("tiny")
    whole = train_supernet(space, data, preset, window=WINDOW, seed=3)
    again = train_supernet(space, data, preset, window=WINDOW, seed=3)
    other = train_supernet(space, data, preset, window=WINDOW, seed=4)
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(again)[key]), key
    assert any(not torch.equal(value, weights(other)[key]) for key, value in weights(whole).items())

    first = train_supernet(space, data, preset, window=WINDOW, seed=3, folder=tmp_path, stop_after=5)
    assert first.steps_done == 5 and (tmp_path / CHECKPOINT_FILE).is_file()
    with pytest.raises(NasError, match="resume its training first"):
        load_supernet(tmp_path)
    resumed = train_supernet(space, data, preset, window=WINDOW, seed=3, folder=tmp_path)
    assert resumed.steps_done == preset.steps
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(resumed)[key]), key
    loaded = load_supernet(tmp_path)
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(loaded)[key]), key

    with pytest.raises(NasError, match="other settings"):
        train_supernet(space, data, preset, window=WINDOW, seed=5, folder=tmp_path)

    # A checkpoint of an older weight layout (depthwise-separable sharing the MBConv path) is refused.
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    del checkpoint["identity"]["layout"]
    torch.save(checkpoint, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(NasError, match="older weight layout .*train it again"):
        load_supernet(tmp_path)


def test_the_score_is_the_extracted_networks_accuracy_after_recalibration(data):
    space = load_space("tiny")
    run = train_supernet(space, data, get_supernet_preset("tiny"), window=WINDOW, seed=0)
    settings = ScoringSettings(calibration_images=64, calibration_batch=32)
    scorer = SupernetScorer(run.supernet, data, resolution=16, settings=settings)
    spec = largest_spec(space)
    score = scorer.score(spec)
    model = scorer.network(spec)
    val = resize_images(data.val_x, 16)
    assert score.accuracy == pytest.approx(evaluate(model, val, data.val_y, scorer.mean, scorer.std))
    assert score.loss > 0
    # The BN statistics are the calibration images' own: the first BN's mean is the stem conv output's mean.
    with torch.no_grad():
        stem = torch.nn.functional.conv2d(torch.cat(scorer.calibration), model.stem.conv.weight, None, 2, 1)
    torch.testing.assert_close(model.stem.bn.running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    again = scorer.score(spec)  # scoring changes nothing in the supernet: the same score again
    assert (again.accuracy, again.loss) == (score.accuracy, score.loss)
