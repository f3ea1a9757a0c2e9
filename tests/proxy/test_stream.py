"""Folder data sets at the run's resolution, in memory or streamed from disk by DataLoader workers when they
exceed the memory budget; corrupt files skipped with a count or failing with their name."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from nas.cli.main import main
from nas.errors import NasError
from nas.proxy.augment import channel_stats
from nas.proxy.batches import batch_source
from nas.proxy.data import (
    MEMORY_BUDGET_ENV,
    ProxyData,
    default_memory_budget,
    load_dataset,
)
from nas.proxy.folder import read_image
from nas.proxy.presets import get_preset
from nas.proxy.stream import StreamingData
from nas.proxy.trainer import train
from tests.proxy.folders import SMALL, write_patch_folder

# Enough steps at a high learning rate for SMALL to learn the colours: chance is 0.25.
LEARN = get_preset("tiny").with_changes(epochs=5, subset=None, lr_per_256=0.2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_patch_folder(tmp_path_factory.mktemp("patches"), 480, size=20, test=80)


def test_folder_over_the_budget_streams_and_learns_like_the_in_memory_path(folder):
    in_memory = load_dataset(f"folder:{folder}", image_size=16, seed=1)
    streamed = load_dataset(f"folder:{folder}", image_size=16, seed=1, memory_budget=100_000)  # < 560 x 768 B
    assert isinstance(in_memory, ProxyData) and isinstance(streamed, StreamingData)
    # The same split: the streamed files are the in-memory images, in the same order.
    assert torch.equal(streamed.train_y, in_memory.train_y) and torch.equal(streamed.val_y, in_memory.val_y)
    first = torch.from_numpy(read_image(streamed.train[0][0], 16)).permute(2, 0, 1)
    assert torch.equal(first, in_memory.train_x[0])
    a = train(SMALL, in_memory, LEARN, seed=1, evaluate_test=True)
    b = train(SMALL, streamed, LEARN, seed=1, evaluate_test=True, loader_workers=2)
    assert (a.data_path, b.data_path) == ("memory", "stream") and a.steps == b.steps
    assert a.val_acc > 0.9 and b.val_acc > 0.9  # chance is 0.25
    assert abs(a.val_acc - b.val_acc) <= 0.1 and abs(a.test_acc - b.test_acc) <= 0.1  # same images, other crops
    assert b.history[-1].train_loss < b.history[0].train_loss


def test_streamed_run_is_the_same_whatever_the_number_of_workers(folder):
    data = load_dataset(f"folder:{folder}", image_size=16, seed=2, memory_budget=0)
    preset = LEARN.with_changes(epochs=2)
    inline, pooled = (train(SMALL, data, preset, seed=2, loader_workers=n) for n in (0, 2))
    assert [h.train_loss for h in inline.history] == [h.train_loss for h in pooled.history]
    assert all(torch.equal(inline.state_dict[k], pooled.state_dict[k]) for k in inline.state_dict)


def _pattern_folder(root, count=8, size=64):
    """Images with detail at every scale, so that decoding at 24 px and resizing 64 px to 24 differ."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size + 10, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_folder_images_are_decoded_at_the_run_resolution(tmp_path, monkeypatch, capsys):
    root = _pattern_folder(tmp_path / "pattern")
    data = load_dataset(f"folder:{root}", image_size=24, val_fraction=0.25)
    direct = torch.from_numpy(read_image(sorted((root / "a").iterdir())[0], 24)).permute(2, 0, 1)
    assert data.image_size == 24 and any(torch.equal(direct, x) for x in data.train_x.unbind() + data.val_x.unbind())
    resized_from_64 = load_dataset(f"folder:{root}", val_fraction=0.25)  # the old fixed 64 px
    assert resized_from_64.image_size == 64
    # The streamed path decodes at the run's resolution too: its validation batches are the files at 24 px.
    streamed = load_dataset(f"folder:{root}", val_fraction=0.25, memory_budget=0)
    source = batch_source(streamed, resolution=24, batch_size=4, padding=3, flip=True, seed=0, rank=0, world=1,
                          device=torch.device("cpu"), eval_batch_size=500, loader_workers=0)
    (images, _), = source.eval_batches("val")
    expected = torch.stack([torch.from_numpy(read_image(p, 24)).permute(2, 0, 1) for p in streamed.val[0]])
    assert images.shape == (4, 3, 24, 24) and torch.equal(images, expected)
    source.close()
    # `nas train --resolution 24` decodes every file at 24 px and never at the old 64.
    import nas.proxy.folder

    sizes = set()
    real = nas.proxy.folder.read_image
    monkeypatch.setattr(nas.proxy.folder, "read_image", lambda path, size: sizes.add(size) or real(path, size))
    rc = main(["train", _save_small(tmp_path), "--data", f"folder:{root}", "--preset", "tiny", "--epochs", "1",
               "--resolution", "24", "--val-fraction", "0.25", "--out", str(tmp_path / "run")])
    assert rc == 0 and sizes == {24}, capsys.readouterr()


def _save_small(tmp_path) -> str:
    from nas.arch.spec import save_spec

    save_spec(SMALL, tmp_path / "small.json")
    return str(tmp_path / "small.json")


def _with_corrupt_file(folder_root):
    bad = folder_root / "class1" / "99999.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return bad


def test_corrupt_images_fail_with_their_name_or_are_skipped_with_a_count(tmp_path, caplog):
    root = write_patch_folder(tmp_path / "q", 64)
    bad = _with_corrupt_file(root)
    with pytest.raises(NasError, match=f"{bad}: cannot decode image.*--corrupt skip"):
        load_dataset(f"folder:{root}", image_size=16)
    with caplog.at_level(logging.WARNING):
        kept = load_dataset(f"folder:{root}", image_size=16, corrupt="skip")
    assert len(kept.train_y) + len(kept.val_y) == 64 and "skipped 1 corrupt image(s) of" in caplog.text
    # Streamed: the worker reports the file instead of raising inside the DataLoader.
    streamed = load_dataset(f"folder:{root}", image_size=16, corrupt="skip", memory_budget=0)
    preset = LEARN.with_changes(epochs=2)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = train(SMALL, streamed, preset, loader_workers=1)
    assert result.corrupt_skipped == (str(bad),) and "skipped 1 corrupt image(s) so far" in caplog.text
    failing = load_dataset(f"folder:{root}", image_size=16, memory_budget=0)
    with pytest.raises(NasError, match=f"{bad}: cannot decode image"):
        train(SMALL, failing, preset, loader_workers=1)


def test_cli_streamed_corrupt_image_is_one_line_exit_2(tmp_path, capsys):
    root = write_patch_folder(tmp_path / "q", 64)
    bad = _with_corrupt_file(root)
    rc = main(["train", _save_small(tmp_path), "--data", f"folder:{root}", "--preset", "tiny",
               "--memory-budget", "1K", "--loader-workers", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(bad) in err and "Traceback" not in err


def test_streamed_channel_statistics_come_from_a_sample_close_to_the_exact_ones(folder):
    streamed = load_dataset(f"folder:{folder}", image_size=16, memory_budget=0)
    exact_mean, exact_std = channel_stats(load_dataset(f"folder:{folder}", image_size=16).train_x)
    source = batch_source(streamed, resolution=16, batch_size=32, padding=2, flip=True, seed=0, rank=0, world=1,
                          device=torch.device("cpu"), eval_batch_size=500, loader_workers=0)
    assert torch.allclose(source.mean, exact_mean, rtol=0.02) and torch.allclose(source.std, exact_std, rtol=0.02)
    source.close()


def test_memory_budget_default_and_environment(monkeypatch):
    monkeypatch.delenv(MEMORY_BUDGET_ENV, raising=False)
    assert default_memory_budget() == 2 * 2**30
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "512M")
    assert default_memory_budget() == 512 * 2**20
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "plenty")
    with pytest.raises(NasError, match="NAS_MEMORY_BUDGET"):
        default_memory_budget()


def test_training_a_folder_decoded_smaller_than_the_run_warns(tmp_path, caplog):
    root = write_patch_folder(tmp_path / "q", 40)
    small = load_dataset(f"folder:{root}", image_size=12)
    with caplog.at_level(logging.WARNING):
        train(SMALL, small, LEARN.with_changes(epochs=1))  # the tiny preset trains at 16 px
    assert "decoded at 12 px and are upsampled to 16 px" in caplog.text
