"""A small dataset laid out exactly as Cityscapes for pix2pix (for tests: no real Cityscapes here).

Under ``root``: the official ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,color}.png``
and ``leftImg8bit/<split>/<city>/..._leftImg8bit.png`` (small frames instead of 1024x2048), and the
pix2pix pairs made from them as the authors' ``prepare_cityscapes_dataset.py`` makes them: frame
i of the sorted colour maps becomes ``<pairs>/i.jpg``, photo left and colour map right, each
resized to 256. Label ids include ones the evaluation ignores (0 unlabeled, 1 ego vehicle, 4
static) beside train classes; two cities so the sort crosses folders; 11 frames so ``10.jpg``
sorts before ``2.jpg`` as text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CITIES = ("aachen", "bochum")
LABEL_IDS = (0, 1, 4, 7, 8, 11, 21, 23, 24, 26)   # unlabeled, ego vehicle, static, road, sidewalk,
                                                   # building, vegetation, sky, person, car


def _frame_ids(count: int) -> list[tuple[str, str]]:
    return [(CITIES[i % 2], f"{CITIES[i % 2]}_000000_{i:06d}") for i in range(count)]


def write_cityscapes_layout(root: Path, frames: int = 11, size: tuple[int, int] = (32, 64), split: str = "val",
                            pairs: str = "val") -> list[Path]:
    """Write the layout; returns the labelIds files in sorted (pairing) order."""
    from cityscapesscripts.helpers.labels import id2label

    palette = np.zeros((256, 3), dtype=np.uint8)       # each labelId's colour in the *_color.png maps
    for label_id, label in id2label.items():
        if 0 <= label_id < 256:
            palette[label_id] = label.color
    rng = np.random.default_rng(sum(map(ord, split)))   # each split its own frames (no leak)
    height, width = size
    for city, frame in _frame_ids(frames):
        ids = rng.choice(LABEL_IDS, size=(height // 8, width // 8)).astype(np.uint8)
        ids = np.kron(ids, np.ones((8, 8), dtype=np.uint8))            # blocks, as regions are
        colour = palette[ids]
        photo = (colour.astype(np.int16) + rng.integers(-20, 20, colour.shape)).clip(0, 255).astype(np.uint8)
        for folder, suffix, image in (("gtFine", "_gtFine_labelIds.png", ids), ("gtFine", "_gtFine_color.png", colour),
                                      ("leftImg8bit", "_leftImg8bit.png", photo)):
            path = root / folder / split / city / f"{frame}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
    colours = sorted((root / "gtFine" / split).glob("*/*_color.png"))
    photos = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
    (root / pairs).mkdir(parents=True, exist_ok=True)
    for i, (colour_path, photo_path) in enumerate(zip(colours, photos)):
        side_by_side = Image.new("RGB", (512, 256))
        side_by_side.paste(Image.open(colour_path).convert("RGB").resize((256, 256)), (256, 0))
        side_by_side.paste(Image.open(photo_path).convert("RGB").resize((256, 256)), (0, 0))
        side_by_side.save(root / pairs / f"{i}.jpg", format="JPEG", subsampling=0, quality=100)
    return sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
