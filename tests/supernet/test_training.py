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
    random_blocks,
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


def test_mixed_ends_take_the_given_block_type_per_stage():
    """The mixed-ends option's members: the largest and the smallest of a drawn block type per stage (an MBConv
    smallest at its smallest expansion above 1, since expansion 1 is the depthwise-separable block)."""
    space = load_space("mnasnet")
    blocks = random_blocks(space, random.Random(1))
    assert set(blocks) == set(range(1, len(space.stages) + 1))
    assert all(blocks[i] in stage.block for i, stage in enumerate(space.stages, start=1))
    draws = [random_blocks(space, random.Random(seed)) for seed in range(30)]
    assert all({draw[i] for draw in draws} == set(stage.block) for i, stage in enumerate(space.stages, start=1))
    large, small = largest_spec(space, blocks), smallest_spec(space, blocks)
    for i, stage in enumerate(space.stages):
        assert large.stages[i].block == small.stages[i].block == blocks[i + 1]
        assert large.stages[i].out_channels == max(stage.filters) and small.stages[i].out_channels == min(stage.filters)
        if blocks[i + 1] == "mbconv":
            assert small.stages[i].expand == 3 and large.stages[i].expand == 6
    assert largest_spec(space) == largest_spec(space, {}) and smallest_spec(space) == smallest_spec(space, None)


def test_mixed_ends_training_is_seeded_and_changes_the_run(data):
    space = load_space("tiny")
    preset = get_supernet_preset("tiny").with_changes(mixed_ends=True, random_archs=1, steps=4)
    one, two = (train_supernet(space, data, preset, window=WINDOW, seed=3) for _ in range(2))
    plain = train_supernet(space, data, get_supernet_preset("tiny").with_changes(steps=4), window=WINDOW, seed=3)
    assert all(torch.equal(value, weights(two)[key]) for key, value in weights(one).items())
    assert any(not torch.equal(value, weights(plain)[key]) for key, value in weights(one).items())


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
