"""Reading an image file the way the whole tool does: decode, convert to a colour mode, resize the shorter side
(bilinear, antialiased), crop the centre square. The folder data source and an export's preprocessing both
use it, so an image reaches a network as the training images did."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nas.errors import NasError


class UnreadableImage(NasError):
    """An image file Pillow cannot decode; carries the path and Pillow's reason (the folder data source skips
    such files when asked to)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: cannot decode image ({reason})")
        self.path, self.reason = str(path), reason


def read_square_image(path: str | Path, size: int, mode: str = "RGB") -> np.ndarray:
    """The image at `path` in Pillow `mode`, shorter side resized to `size`, centre-cropped: uint8 H x W x C."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            image = image.convert(mode)
            scale = size / min(image.size)
            w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((w, h), Image.BILINEAR)
            left, top = (w - size) // 2, (h - size) // 2
            pixels = np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)  # writable
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(path, str(exc)) from None
    return pixels.reshape(size, size, -1)
