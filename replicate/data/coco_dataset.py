"""COCO-format detection data read from disk, in the format torchvision detection models take.

``CocoDetection`` serves both the real COCO 2017 splits and the synthetic shapes set; it checks
up front that the annotation file and every referenced image exist, so a broken volume fails at
setup with the file named rather than hours into training.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from replicate.data.augment_random import AugmentationRandom
from replicate.errors import ConfigError, DataError

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def derangement(n: int, seed: int) -> list[int]:
    """A deterministic permutation of ``range(n)`` without fixed points (for n >= 2).

    A random single cycle: element ``order[k]`` maps to ``order[k + 1]``, so no sample keeps its
    own label — the point of a shuffled-label negative control.
    """
    if n < 2:
        return list(range(n))
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm.tolist()


def load_rgb(path: Path) -> Image.Image:
    """Opens an image as RGB, turning a missing or undecodable file into a DataError."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except FileNotFoundError:
        raise DataError(str(path), "image file is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(str(path), f"image file is corrupt or unreadable: {exc}") from None


def _load_coco(path: Path) -> COCO:
    if not path.is_file():
        raise DataError(str(path), "annotation file is missing")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(path))
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DataError(str(path), f"annotation file is not valid COCO JSON: {exc}") from None
    _check_annotations(coco, path)
    return coco


def _check_annotations(coco: COCO, path: Path) -> None:
    """Every annotation names a known image and has four finite numbers as its bbox: otherwise
    the first batch holding it fails deep inside the model with an unnamed ValueError."""
    for ann in coco.anns.values():
        box = ann.get("bbox")
        ok = (isinstance(box, (list, tuple)) and len(box) == 4
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in box))
        if not ok:
            raise DataError(str(path), f"annotation {ann.get('id')!r}: bbox {box!r} is not four finite numbers "
                                       "[x, y, width, height]")
        if ann.get("image_id") not in coco.imgs or "category_id" not in ann:
            raise DataError(str(path), f"annotation {ann.get('id')!r}: image_id {ann.get('image_id')!r} is not "
                                       "an image of the file, or category_id is missing")


def has_usable_annotation(anns: Sequence[dict]) -> bool:
    """Whether torchvision's detection reference trains on an image with these annotations
    (references/detection/coco_utils.py, _coco_remove_images_without_annotations): one box, crowd
    or not, of any category, wider and taller than 1 px. Its keypoint clause (10 visible
    keypoints) belongs to the person_keypoints files, which no task here trains on."""
    return any(a["bbox"][2] > 1 and a["bbox"][3] > 1 for a in anns)


class CocoDetection(Dataset):
    """Images and detection targets from a COCO-format annotation file.

    Items are ``(image, target)``: image float32[3,H,W] in [0, 1]; target has ``boxes``
    float32[N,4] (x1, y1, x2, y2 in pixels), ``labels`` int64[N] (COCO category ids, as
    torchvision's COCO models use them), ``image_id`` int, ``area`` float32[N], ``iscrowd``
    int64[N] and, with ``with_masks``, ``masks`` uint8[N,H,W]. Degenerate boxes are left out of
    targets, and crowd annotations too unless ``with_crowd`` (evaluation reads them from
    ``.coco``). Images without annotations are kept (evaluation needs every image) unless
    ``skip_unannotated``.

    Attributes:
        coco: The pycocotools COCO object (ground truth for evaluation).
        annotation_file: Path of the annotation JSON.
        image_dir: Folder the images' ``file_name`` are relative to.
        image_ids: Image ids in dataset order (sorted).
        category_ids: Category ids kept in targets.
    """

    def __init__(self, root: str | Path, images: str, annotations: str, *,
                 transforms: Transform | None = None, shuffle_labels_seed: int | None = None,
                 with_masks: bool = False, category_ids: Sequence[int] | None = None,
                 with_crowd: bool = False, skip_unannotated: bool = False):
        """Loads the annotations and checks that every referenced image exists.

        Args:
            root: Dataset root.
            images: Image folder, relative to ``root``.
            annotations: Annotation JSON, relative to ``root``.
            transforms: Callable ``(image, target) -> (image, target)`` applied last.
            shuffle_labels_seed: Negative control: image i gets the targets of image
                ``derangement(n, seed)[i]`` (boxes and masks rescaled to image i's size).
            with_masks: Add instance masks to targets.
            category_ids: Keep only these categories in targets (default: all in the file).
            with_crowd: Crowd annotations are objects of the targets (``iscrowd`` 1), as
                CenterNet's training sample has them.
            skip_unannotated: Only images :func:`has_usable_annotation` accepts, as
                torchvision's detection reference trains (its get_coco(image_set="train")).

        Raises:
            DataError: The annotation file or an image is missing, or the JSON is invalid.
            ConfigError: ``category_ids`` names a category the file does not have.
        """
        self.root = Path(root)
        self.image_dir = self.root / images
        self.annotation_file = self.root / annotations
        self.coco = _load_coco(self.annotation_file)
        self.image_ids: list[int] = sorted(self.coco.imgs)
        if skip_unannotated:
            self.image_ids = [i for i in self.image_ids if has_usable_annotation(self.coco.imgToAnns.get(i, []))]
        known = set(self.coco.cats)
        if category_ids is not None and not set(category_ids) <= known:
            raise ConfigError("category_ids", f"{sorted(set(category_ids) - known)} not in "
                                              f"{self.annotation_file}")
        self.category_ids = sorted(known if category_ids is None else set(category_ids))
        self._keep = set(self.category_ids)
        self.transforms = transforms
        self.with_masks = with_masks
        self.with_crowd = with_crowd
        self._check_images()
        n = len(self.image_ids)
        self._source = (list(range(n)) if shuffle_labels_seed is None
                        else derangement(n, shuffle_labels_seed))

    def _check_images(self) -> None:
        # os.stat only: cheap enough for COCO's 118k files, unlike opening each one.
        for image_id in self.image_ids:
            path = self.image_dir / self.coco.imgs[image_id]["file_name"]
            try:
                os.stat(path)
            except OSError:
                raise DataError(str(path), f"image referenced by {self.annotation_file} is "
                                           "missing") from None

    @property
    def augmentation_random(self) -> AugmentationRandom | None:
        return getattr(self.transforms, "random", None)

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        """Path of the image at ``index``."""
        return self.image_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        image_id = self.image_ids[index]
        pixels = np.array(load_rgb(self.image_path(index)), dtype=np.uint8)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        height, width = pixels.shape[:2]
        target = self._target(self.image_ids[self._source[index]], height, width)
        target["image_id"] = image_id
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _target(self, source_id: int, height: int, width: int) -> Target:
        """Targets of image ``source_id`` scaled to a ``height`` x ``width`` image."""
        info = self.coco.imgs[source_id]
        # Scale from the annotated size: differs only for shuffled labels (or a resized file).
        sx, sy = width / info["width"], height / info["height"]
        anns = [a for a in self.coco.imgToAnns.get(source_id, [])
                if (self.with_crowd or not a.get("iscrowd", 0)) and a["category_id"] in self._keep]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] = (boxes[:, 0::2] * sx).clamp(0, width)
        boxes[:, 1::2] = (boxes[:, 1::2] * sy).clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        target: Target = {
            "boxes": boxes[keep],
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)[keep],
            "area": torch.tensor([a["area"] * sx * sy for a in anns],
                                 dtype=torch.float32)[keep],
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64)[keep],
        }
        if self.with_masks:
            target["masks"] = self._masks(anns, info, height, width)[keep]
        return target

    def _masks(self, anns: list[dict], info: dict, height: int, width: int) -> torch.Tensor:
        if not anns:
            return torch.zeros((0, height, width), dtype=torch.uint8)
        masks = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in anns]))
        if (info["height"], info["width"]) != (height, width):
            masks = torch.nn.functional.interpolate(masks[None].float(), size=(height, width),
                                                    mode="nearest")[0]
        return masks.to(torch.uint8)


def detection_collate(batch: Sequence[tuple[torch.Tensor, Target]]
                      ) -> tuple[list[torch.Tensor], list[Target]]:
    """Collates detection samples into (list of images, list of targets); sizes may differ."""
    return [image for image, _ in batch], [target for _, target in batch]


class RandomHorizontalFlip:
    """Flips image, boxes and masks together with probability ``p``.

    Args:
        p: Flip probability.
        generator: Seed of the flip draws (an :class:`AugmentationRandom`, checkpointed with the
            job), or None for torch's global generator.
    """

    def __init__(self, p: float = 0.5, generator: int | None = None):
        self.p = p
        self.random = AugmentationRandom(generator) if generator is not None else None

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        draw = torch.rand((), generator=self.random.get() if self.random else None).item()
        if draw >= self.p:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        if "boxes" in target:
            boxes = target["boxes"].clone()
            boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
            target["boxes"] = boxes
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target


class Compose:
    """Chains ``(image, target)`` transforms."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target
