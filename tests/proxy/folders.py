"""Small image folders the proxy tests write: classes a network learns in a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from nas.arch.spec import Spec, StageSpec

# A three-stage network that trains in about a second on 16-pixel images.
SMALL = Spec(stages=(StageSpec("mbconv", 1, 3, 1, 1, 8), StageSpec("mbconv", 2, 3, 2, 3, 16),
                     StageSpec("mbconv", 1, 5, 2, 3, 24)),
             stem_channels=8, head_channels=64, name="small")


PALETTE = ((200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40))  # one colour per class


def patch_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a patch of the class's colour somewhere in it: a class a pooled network sees anywhere."""
    image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    side = size // 2
    top, left = rng.integers(0, size - side + 1, 2)
    image[top:top + side, left:left + side] = PALETTE[label]
    return image


def write_patch_folder(root: Path, n: int, size: int = 16, *, classes: int = 4, seed: int = 0,
                       test: int = 0) -> Path:
    """root/class<k>/<i>.png with `n` images (in root/train, with `test` more in root/val, when test > 0)."""
    rng = np.random.default_rng(seed)
    train_root = root / "train" if test else root
    for split_root, count in ((train_root, n), (root / "val", test)):
        for i in range(count):
            label = i % classes
            folder = split_root / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(patch_image(label, size, rng)).save(folder / f"{i:05d}.png")
    return root
