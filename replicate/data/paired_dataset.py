"""Paired label-map -> photo data for image-to-image models (pix2pix).

Two on-disk layouts are read:

* separate files: ``NNNNN_label.png`` + ``NNNNN_image.png`` (the synthetic shapes set);
* pix2pix "aligned": one ``*.jpg``/``*.png`` per sample with both halves side by side. The
  pix2pix repository's Cityscapes and facades sets put the photo left (A) and the label map
  right (B) and train with ``--direction BtoA``; ``label_side`` says which half is the label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from replicate.data.coco_dataset import derangement, load_rgb
from replicate.errors import ConfigError, DataError

_LABEL_SUFFIX = "_label.png"
_IMAGE_SUFFIX = "_image.png"
_ALIGNED_EXTENSIONS = {".jpg", ".jpeg", ".png"}


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32[3,H,W] in [-1, 1] (pix2pix's tanh output range)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
    return pixels.float().div_(127.5).sub_(1.0)


class PairedImages(Dataset):
    """(label map, photo) pairs as float32[3,H,W] tensors in [-1, 1].

    Attributes:
        folder: The pairs folder (``root / pairs``).
        aligned: True when samples are single side-by-side files.
        samples: Per sample, (label file, photo file); the same file twice when aligned.
    """

    def __init__(self, root: str | Path, pairs: str, *, shuffle_pairs_seed: int | None = None,
                 size: int | None = None, label_side: str = "right"):
        """Indexes the pairs folder.

        Args:
            root: Dataset root.
            pairs: Pairs folder, relative to ``root``.
            shuffle_pairs_seed: Negative control: label i is paired with the photo of sample
                ``derangement(n, seed)[i]``, so no label keeps its own photo.
            size: Resize both to ``size`` x ``size`` (label: nearest, so its colour codes stay
                exact; photo: bicubic). None keeps the stored size.
            label_side: Aligned layout only: which half ("left" or "right") is the label map.

        Raises:
            DataError: The folder is missing or holds no pairs, or a label has no photo.
            ConfigError: ``label_side`` or ``size`` is invalid.
        """
        if label_side not in ("left", "right"):
            raise ConfigError("label_side", f"must be 'left' or 'right', got {label_side!r}")
        if size is not None and size < 1:
            raise ConfigError("size", f"must be a positive integer, got {size!r}")
        self.folder = Path(root) / pairs
        if not self.folder.is_dir():
            raise DataError(str(self.folder), "pairs folder is missing")
        self.size = size
        self.label_side = label_side
        self.samples = self._index()
        self.aligned = self.samples[0][0] == self.samples[0][1]
        n = len(self.samples)
        self._source = (list(range(n)) if shuffle_pairs_seed is None
                        else derangement(n, shuffle_pairs_seed))

    def _index(self) -> list[tuple[Path, Path]]:
        labels = sorted(self.folder.glob("*" + _LABEL_SUFFIX))
        if labels:
            samples = []
            for label in labels:
                photo = label.with_name(label.name[: -len(_LABEL_SUFFIX)] + _IMAGE_SUFFIX)
                if not photo.is_file():
                    raise DataError(str(photo), f"photo for label {label.name} is missing")
                samples.append((label, photo))
            return samples
        files = sorted(p for p in self.folder.iterdir()
                       if p.suffix.lower() in _ALIGNED_EXTENSIONS and p.is_file())
        if not files:
            raise DataError(str(self.folder), "no *_label.png/*_image.png pairs and no aligned "
                                              "side-by-side images")
        return [(path, path) for path in files]

    def __len__(self) -> int:
        return len(self.samples)

    def _halves(self, path: Path) -> tuple[Image.Image, Image.Image]:
        """Splits an aligned file into (label, photo)."""
        image = load_rgb(path)
        half = image.width // 2
        if half < 1:
            raise DataError(str(path), "aligned image is too narrow to hold two halves")
        left = image.crop((0, 0, half, image.height))
        right = image.crop((half, 0, 2 * half, image.height))
        return (left, right) if self.label_side == "left" else (right, left)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label_path, _ = self.samples[index]
        _, photo_path = self.samples[self._source[index]]
        if self.aligned:
            label, _ = self._halves(label_path)
            _, photo = self._halves(photo_path)
        else:
            label, photo = load_rgb(label_path), load_rgb(photo_path)
        if self.size is not None:
            label = label.resize((self.size, self.size), Image.Resampling.NEAREST)
            photo = photo.resize((self.size, self.size), Image.Resampling.BICUBIC)
        elif photo.size != label.size:  # shuffled pairs of differently sized samples
            photo = photo.resize(label.size, Image.Resampling.BICUBIC)
        return _to_tensor(label), _to_tensor(photo)
