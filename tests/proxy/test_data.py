"""Loaders for the three layouts (files written by the tests), the seeded split, and batched augmentation."""

import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from nas.errors import NasError
from nas.proxy.augment import (
    RandAugment,
    channel_stats,
    crop_flip,
    crop_pixels,
    normalize,
    resize_images,
)
from nas.proxy.data import FASHION_MNIST_DIR, load_dataset
from nas.proxy.presets import get_preset


def write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


def make_idx_dir(root, compress, n_train=40, n_test=10):
    rng = np.random.default_rng(1)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loader_reads_pixels_and_labels(tmp_path, compress):
    arrays = make_idx_dir(tmp_path, compress)
    data = load_dataset(f"idx:{tmp_path}", val_fraction=0.25, seed=3)
    assert data.train_x.shape == (30, 1, 28, 28) and data.val_x.shape == (10, 1, 28, 28)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert data.num_classes == 10 and data.in_channels == 1
    np.testing.assert_array_equal(data.test_x[:, 0].numpy(), arrays["t10k"][0])
    # Every pooled image keeps its own label: look each one up in the written file.
    images, labels = arrays["train"]
    lookup = {images[i].tobytes(): labels[i] for i in range(len(images))}
    pooled = torch.cat([data.train_x, data.val_x])[:, 0].numpy()
    pooled_labels = torch.cat([data.train_y, data.val_y]).numpy()
    assert sorted(lookup[img.tobytes()] for img in pooled) == sorted(labels)
    assert all(lookup[img.tobytes()] == lab for img, lab in zip(pooled, pooled_labels))


def test_split_is_seeded_disjoint_and_subset_caps_pool(tmp_path):
    make_idx_dir(tmp_path, compress=True, n_train=100)
    a = load_dataset(f"idx:{tmp_path}", seed=7)
    b = load_dataset(f"idx:{tmp_path}", seed=7)
    c = load_dataset(f"idx:{tmp_path}", seed=8)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.train_x, c.train_x)
    train_keys = {x.numpy().tobytes() for x in a.train_x}
    assert not train_keys & {x.numpy().tobytes() for x in a.val_x}
    assert len(a.val_y) == 10 and len(a.train_y) == 90
    small = load_dataset(f"idx:{tmp_path}", seed=7, subset=40)
    assert len(small.train_y) == 36 and len(small.val_y) == 4
    limited = a.limit(20)
    assert len(limited.train_y) == 18 and len(limited.val_y) == 2


def test_idx_errors_name_the_file(tmp_path):
    make_idx_dir(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(NasError, match="t10k-labels-idx1-ubyte"):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01\x02")
    with pytest.raises(NasError, match="truncated or corrupt"):
        load_dataset(f"idx:{tmp_path}")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"GIF89a....")
    with pytest.raises(NasError, match="bad magic"):
        load_dataset(f"idx:{tmp_path}")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(NasError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset(f"fashion-mnist:{tmp_path / 'nowhere'}")


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    data = load_dataset("fashion-mnist", subset=1000)
    assert data.test_x.shape == (10000, 1, 28, 28) and len(data.train_y) + len(data.val_y) == 1000
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


def write_cifar_batch(path, images, labels, label_key):
    with path.open("wb") as f:
        pickle.dump({b"data": images.reshape(len(images), -1), label_key: list(labels)}, f)


def test_cifar10_loader(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(2)
    batches = []
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4)
        write_cifar_batch(root / f"data_batch_{i}", images, labels, b"labels")
        batches.append((images, labels))
    write_cifar_batch(root / "test_batch", batches[0][0], batches[0][1], b"labels")
    data = load_dataset(f"cifar10:{tmp_path}", val_fraction=0.2)
    assert data.train_x.shape == (16, 3, 32, 32) and data.val_x.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(data.test_x.numpy(), batches[0][0])  # channel-major unpacking
    assert data.num_classes == 10 and data.in_channels == 3


def test_cifar100_loader_and_corrupt_pickle(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    write_cifar_batch(tmp_path / "train", images, np.arange(10) * 9, b"fine_labels")
    write_cifar_batch(tmp_path / "test", images[:2], [0, 99], b"fine_labels")
    data = load_dataset(f"cifar100:{tmp_path}", val_fraction=0.2)
    assert data.num_classes == 100 and len(data.train_y) == 8
    (tmp_path / "test").write_bytes(b"not a pickle")
    with pytest.raises(NasError, match="not a CIFAR python batch"):
        load_dataset(f"cifar100:{tmp_path}")


def test_cifar_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    write_cifar_batch(tmp_path / "train", np.zeros((2, 3, 32, 32), np.uint8), [0, 1], b"fine_labels")
    (tmp_path / "test").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(NasError, match="refusing to load"):
        load_dataset(f"cifar100:{tmp_path}")


def test_folder_loader_with_train_and_val(tmp_path):
    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for split, count in (("train", 5), ("val", 2)):
        for name, rgb in colours.items():
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + i, 30), rgb).save(tmp_path / split / name / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    data = load_dataset(f"folder:{tmp_path}", val_fraction=0.2, image_size=16)
    assert data.num_classes == 2 and data.in_channels == 3 and data.train_x.shape[1:] == (3, 16, 16)
    assert len(data.train_y) + len(data.val_y) == 10 and len(data.test_y) == 4
    for x, y in zip(data.test_x, data.test_y):  # cat (label 0) is red, dog (label 1) is blue
        assert x[0].float().mean() == (255 if y == 0 else 0) and x[2].float().mean() == (0 if y == 0 else 255)


def test_folder_without_splits_has_no_test_set_and_bad_image_errors(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("L", (20, 20), 10 * i).save(tmp_path / name / f"{i}.jpg")
    data = load_dataset(f"folder:{tmp_path}", val_fraction=0.2, image_size=8)
    assert data.test_x is None and data.train_x.shape[1:] == (3, 8, 8)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(NasError, match="broken.png"):
        load_dataset(f"folder:{tmp_path}")


def test_unknown_source_and_empty_folder(tmp_path):
    with pytest.raises(NasError, match="unknown data source"):
        load_dataset("imagenet")
    with pytest.raises(NasError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path}")


# --- augmentation ---------------------------------------------------------------------------------------

def test_crop_flip_matches_per_image_reference():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = crop_flip(images, padding=2, generator=gen)
    assert out.shape == images.shape and out.is_contiguous(memory_format=torch.channels_last)
    # Replay the same random draws and crop each image the slow way.
    gen = torch.Generator().manual_seed(0)
    dy = torch.randint(0, 5, (16, 1), generator=gen)[:, 0]
    dx = torch.randint(0, 5, (16, 1), generator=gen)[:, 0]
    flips = (torch.rand(16, 1, generator=gen) < 0.5)[:, 0]
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(16):
        ref = padded[i, :, dy[i]:dy[i] + 8, :]
        ref = ref.flip(-1)[:, :, 4 - dx[i]:12 - dx[i]] if flips[i] else ref[:, :, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], ref), i
    assert 0 < flips.sum() < 16


def test_zero_crop_padding_is_no_crop():
    """A preset's crop_padding=0 with flip off leaves the batch as it is (it once meant a 1-pixel crop)."""
    assert crop_pixels(0, 32) == 0 and crop_pixels(0.125, 32) == 4 and crop_pixels(0.125, 28) == 4
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    out = crop_flip(images, crop_pixels(0, 8), torch.Generator().manual_seed(0), flip=False)
    assert torch.equal(out, images)
    with pytest.raises(NasError, match="crop_padding"):
        crop_pixels(-0.1, 32)
    with pytest.raises(NasError, match="crop_padding"):  # refused when the preset is made, not when it trains
        get_preset("search").with_changes(crop_padding=-0.1)


def test_resize_and_normalize():
    images = torch.full((3, 1, 28, 28), 200, dtype=torch.uint8)
    resized = resize_images(images, 32)
    assert resized.shape == (3, 1, 32, 32) and torch.all(resized == 200)
    mean, std = channel_stats(torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8))
    x = normalize(torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8), mean, std)
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    assert x.mean().abs() < 0.1 and (x.std() - 1).abs() < 0.1


def test_normalize_leaves_a_float_batch_untouched():
    pixels = torch.full((2, 1, 4, 4), 100.0)
    x = normalize(pixels, torch.tensor([50.0]), torch.tensor([25.0]))
    assert torch.all(x == 2.0) and torch.all(pixels == 100.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_rand_augment_is_seeded_bounded_and_changes_images(channels):
    images = torch.randint(0, 256, (32, channels, 16, 16), dtype=torch.uint8)
    augment = RandAugment(ops=2, magnitude=9)

    def run(seed):
        torch.manual_seed(seed)
        return augment(images)

    first, again, other = run(0), run(0), run(1)
    for seed in range(2, 30):  # enough draws to hit every operation, the colour ones included
        run(seed)
    assert first.shape == images.shape and first.dtype == torch.float32
    assert 0.0 <= first.min() and first.max() <= 255.0
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    changed = (first - images.float()).abs().flatten(1).amax(1) > 1.0
    assert changed.sum() >= 16  # most images are altered by two operations


@pytest.mark.parametrize("ops, magnitude, message", [(0, 9, "at least 1"), (16, 9, "ops must be"),
                                                     (2, 0, "magnitude"), (2, 30, "magnitude")])
def test_rand_augment_rejects_bad_settings(ops, magnitude, message):
    with pytest.raises(NasError, match=message):
        RandAugment(ops, magnitude)


def test_rand_augment_keeps_grey_images_grey_through_colour_operations():
    grey = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    as_rgb = RandAugment(ops=15, magnitude=20).policy(grey.float().div(255).expand(-1, 3, -1, -1))
    assert torch.allclose(as_rgb[:, 0], as_rgb[:, 1], atol=1e-5) and torch.allclose(as_rgb[:, 0], as_rgb[:, 2], atol=1e-5)
