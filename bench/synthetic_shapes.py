"""A second data set that benches write themselves: ten classes of small shapes in clutter, RGB, 32 px.

Not Fashion-MNIST's kind of image: colour, a random background with noise and stray strokes, and a shape of
random size, position, rotation and colour, so that a network must find and recognise it anywhere. Written as
an ImageNet-style folder (`folder:DIR` reads it), seeded, so every run of a bench sees the same images.

    python bench/synthetic_shapes.py DIR [--train 6000] [--test 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross", "ring", "diamond", "star", "bars", "arc", "x")
SIZE = 32


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float, inner: float | None = None):
    points = []
    steps = corners * (2 if inner else 1)
    for k in range(steps):
        r = radius if (inner is None or k % 2 == 0) else radius * inner
        a = angle + 2 * math.pi * k / steps
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def draw_shape(draw: ImageDraw.ImageDraw, label: int, cx: float, cy: float, r: float, angle: float,
               colour: tuple[int, int, int], width: int) -> None:
    """One shape of class `label` centred at (cx, cy) with radius r."""
    name = CLASSES[label]
    box = (cx - r, cy - r, cx + r, cy + r)
    if name == "circle":
        draw.ellipse(box, fill=colour)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, angle + math.pi / 4), fill=colour)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, r * 1.2, 3, angle), fill=colour)
    elif name == "cross":
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=width + 1)
    elif name == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif name == "diamond":
        draw.polygon(_polygon(cx, cy, r * 1.2, 4, angle, inner=0.55), fill=colour)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, r * 1.25, 5, angle, inner=0.45), fill=colour)
    elif name == "bars":
        for offset in (-r / 2, r / 2):
            dx, dy = -math.sin(angle) * offset, math.cos(angle) * offset
            ex, ey = r * math.cos(angle), r * math.sin(angle)
            draw.line((cx + dx - ex, cy + dy - ey, cx + dx + ex, cy + dy + ey), fill=colour, width=width)
    elif name == "arc":
        start = math.degrees(angle)
        draw.arc(box, start, start + 200, fill=colour, width=width + 1)
    else:  # x
        for a in (angle + math.pi / 4, angle - math.pi / 4):
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line((cx - dx, cy - dy, cx + dx, cy + dy), fill=colour, width=width)


def make_image(label: int, rng: np.random.Generator) -> Image.Image:
    background = rng.integers(0, 256, 3)
    gradient = np.linspace(0, 1, SIZE)[None, :, None] * rng.integers(-60, 61, 3)
    pixels = np.clip(background + gradient + rng.normal(0, 18, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):  # stray strokes: clutter that is no class
        x0, y0, x1, y1 = rng.integers(0, SIZE, 4)
        draw.line((x0, y0, x1, y1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=1)
    r = float(rng.uniform(4.5, 10))
    cx, cy = (float(rng.uniform(r, SIZE - r)) for _ in range(2))
    colour = tuple(int(v) for v in (background + rng.choice([-1, 1], 3) * rng.integers(70, 140, 3)) % 256)
    draw_shape(draw, label, cx, cy, r, float(rng.uniform(0, 2 * math.pi)), colour, int(rng.integers(1, 3)))
    return image


def write_shapes(root: str | Path, train: int = 6000, test: int = 2000, seed: int = 0) -> Path:
    """root/train/<class>/<i>.png and root/val/<class>/<i>.png; an existing complete folder is kept."""
    root = Path(root)
    marker = root / f".complete-{train}-{test}-{seed}"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", test)):
        for i in range(count):
            label = i % len(CLASSES)
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            make_image(label, rng).save(folder / f"{i:05d}.png")
    marker.write_text("")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_shapes(args.folder, args.train, args.test, args.seed))


if __name__ == "__main__":
    main()
