"""Deterministic synthetic "shapes" dataset for the smoke tier.

Each scene is a textured, noisy background with 1..max_objects circles, squares and triangles of
varied size, colour and rotation. A scene is written twice over: as a COCO detection sample
(``train/``, ``train.json``: boxes, areas, compressed-RLE masks) and as a pix2pix pair
(``pairs/train/NNNNN_label.png`` colour-coded label map, ``NNNNN_image.png`` the photo). Same
config -> byte-identical files, so the manifest hash pins the smoke data in the fingerprint.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from replicate.data.manifest import verify_manifest, write_manifest
from replicate.errors import ConfigError, DataError

FORMAT_VERSION = 2  # bump when the rendering changes, so old sets are regenerated
SHAPE_CLASSES = ("circle", "square", "triangle")
SPLITS = ("train", "val")
# Fixed per class name (not per index) so a label map means the same under any class order.
LABEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 0), "circle": (255, 0, 0), "square": (0, 255, 0), "triangle": (0, 0, 255)}
# Pair photos: a fixed "material" colour per class, so label -> photo is learnable (the COCO
# images colour objects at random, which no generator could predict from a label map).
PHOTO_COLOURS: dict[str, tuple[int, int, int]] = {
    "background": (200, 200, 190), "circle": (230, 120, 30), "square": (30, 140, 150),
    "triangle": (120, 50, 160)}
_PHOTO_NOISE = 12.0     # std of the pair photos' texture, in grey levels
_MIN_VISIBLE = 0.7      # an occluded object keeps at least this fraction of its area
_STALE_AFTER_S = 6 * 3600  # temp dirs of other hosts older than this are abandoned
_PNG_LEVEL = 1          # fixed zlib level: part of the byte-for-byte determinism


def _get(cfg: Any, key: str) -> Any:
    try:
        return cfg[key]
    except Exception as exc:  # KeyError, OmegaConf's missing-value errors
        raise ConfigError(f"data.{key}", f"cannot be read: {exc}") from None


def generation_params(cfg: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Extracts and validates the parameters that determine the generated files.

    Raises:
        ConfigError: A key is missing or out of range (the key is named ``data.<key>``).
    """
    params: dict[str, Any] = {"format_version": FORMAT_VERSION}
    limits = {"image_size": 32, "num_train": 1, "num_val": 0, "max_objects": 1, "seed": 0}
    for key, low in limits.items():
        value = _get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"data.{key}", f"must be an integer >= {low}, got {value!r}")
        params[key] = value
    classes = [str(c) for c in _get(cfg, "classes")]
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(SHAPE_CLASSES):
        raise ConfigError("data.classes", f"must be distinct names from {SHAPE_CLASSES}")
    params["classes"] = classes
    return params


def ensure_shapes(cfg: Mapping[str, Any] | Any) -> Path:
    """Returns the root of a complete shapes set for ``cfg``, generating it when needed.

    An existing set is reused when its manifest verifies and its ``params.json`` equals the
    config's parameters; otherwise the set is generated in a temp directory next to ``root`` and
    renamed into place, so a crash never leaves a half-written set at ``root``.

    Args:
        cfg: Mapping or OmegaConf node with the DataConfig keys root, image_size, num_train,
            num_val, max_objects, classes, seed.

    Raises:
        ConfigError: A parameter is missing or invalid.
        DataError: The set cannot be written (e.g. a read-only or full volume).
    """
    params = generation_params(cfg)
    root = Path(str(_get(cfg, "root")))
    if _is_current(root, params):
        return root
    tmp = _sibling(root, "tmp")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(root)
        tmp.mkdir()
        _generate(tmp, params)
        _install(tmp, root, params)
    except OSError as exc:
        raise DataError(str(root), f"cannot write the shapes set: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no-op after a successful rename
    return root


def _is_current(root: Path, params: dict[str, Any]) -> bool:
    """True when ``root`` holds a verified set generated with exactly ``params``."""
    try:
        recorded = json.loads((root / "params.json").read_text(encoding="utf-8"))
        if recorded != params:
            return False
        verify_manifest(root)
    except (OSError, ValueError, DataError):
        return False
    return True


def _sibling(root: Path, kind: str) -> Path:
    """A unique hidden directory name next to ``root``; host and pid mark its owner."""
    host = socket.gethostname().replace("-", "_")
    return root.with_name(f".{root.name}.{kind}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _clean_stale(root: Path) -> None:
    """Removes temp/old siblings left by crashed generators (dead pid here, or very old)."""
    host = socket.gethostname().replace("-", "_")
    pattern = re.compile(re.escape(f".{root.name}.") + r"(?:tmp|old)-(.+)-(\d+)-[0-9a-f]+")
    for path in root.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            continue
        crashed_here = match[1] == host and not _pid_alive(int(match[2]))
        if crashed_here or age > _STALE_AFTER_S:
            shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError):
        return False
    return True


def _install(tmp: Path, root: Path, params: dict[str, Any]) -> None:
    """Moves the finished set into place; tolerates a concurrent generator winning the race."""
    old = None
    if root.exists():
        if _is_current(root, params):
            return  # another process installed an identical set meanwhile
        old = _sibling(root, "old")
        os.rename(root, old)
    try:
        os.rename(tmp, root)
    except OSError:
        if not _is_current(root, params):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _generate(out: Path, params: dict[str, Any]) -> None:
    """Writes every split, params.json and the manifest under ``out``."""
    counts = {"train": params["num_train"], "val": params["num_val"]}
    for split_index, split in enumerate(SPLITS):
        coco = _write_split(out, split, split_index, counts[split], params)
        text = json.dumps(coco, separators=(",", ":"))
        (out / f"{split}.json").write_text(text, encoding="utf-8")
    (out / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True) + "\n")
    write_manifest(out)


def class_colours(classes: Any) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' colours per class code (background 0, then ``classes`` in order): the label
    map's and the photo's material colour, each int64 [1 + len(classes), 3] grey levels."""
    names = ["background", *[str(c) for c in classes]]
    unknown = [n for n in names if n not in LABEL_COLOURS]
    if unknown:
        raise ConfigError("data.classes", f"{unknown[0]!r} is not a shapes class; allowed: {', '.join(SHAPE_CLASSES)}")
    return (np.array([LABEL_COLOURS[n] for n in names], dtype=np.int64),
            np.array([PHOTO_COLOURS[n] for n in names], dtype=np.int64))


def _write_split(out: Path, split: str, split_index: int, count: int,
                 params: dict[str, Any]) -> dict[str, Any]:
    """Renders ``count`` scenes of one split and returns its COCO dictionary."""
    size, classes = params["image_size"], params["classes"]
    (out / split).mkdir()
    (out / "pairs" / split).mkdir(parents=True)
    label_colours, material_colours = class_colours(classes)
    palette, materials = label_colours.astype(np.uint8), material_colours.astype(float)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in range(count):
        # One generator per scene: a scene does not depend on how many others precede it.
        seq = np.random.SeedSequence(params["seed"], spawn_key=(split_index, index))
        image, owner, object_classes = render_scene(np.random.default_rng(seq), params)
        name = f"{index:05d}.png"
        photo = _png_bytes(image)
        (out / split / name).write_bytes(photo)
        codes = np.array([0] + [c + 1 for c in object_classes])[owner]
        texture = np.random.default_rng(np.random.SeedSequence(params["seed"], spawn_key=(split_index, index, 1)))
        pair_photo = materials[codes] + texture.normal(0.0, _PHOTO_NOISE, size=codes.shape + (3,))
        (out / "pairs" / split / f"{index:05d}_image.png").write_bytes(
            _png_bytes(np.clip(np.rint(pair_photo), 0, 255).astype(np.uint8)))
        label = palette[codes]
        (out / "pairs" / split / f"{index:05d}_label.png").write_bytes(_png_bytes(label))
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": size, "height": size})
        for k, cls in enumerate(object_classes):
            annotations.append(_annotation(owner == k + 1, len(annotations) + 1, image_id, cls))
    categories = [{"id": i + 1, "name": c, "supercategory": "shape"}
                  for i, c in enumerate(classes)]
    info = {"description": f"zoo-replicate synthetic shapes, {split}", "version": "1"}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations,
            "categories": categories}


def _annotation(mask: np.ndarray, ann_id: int, image_id: int, cls: int) -> dict[str, Any]:
    """A COCO annotation from the object's exact visible mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    return {"id": ann_id, "image_id": image_id, "category_id": cls + 1, "bbox": bbox,
            "area": int(mask.sum()), "iscrowd": 0,
            "segmentation": {"size": [int(s) for s in rle["size"]],
                             "counts": rle["counts"].decode("ascii")}}


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=_PNG_LEVEL)
    return buffer.getvalue()


def render_scene(rng: np.random.Generator, params: dict[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Renders one scene.

    Returns:
        (image uint8[S,S,3], owner int[S,S] with 0 = background and k = k-th object (1-based),
        class index per object). Later objects occlude earlier ones; every object keeps at
        least 70% of its area visible.
    """
    size, classes = params["image_size"], params["classes"]
    image = _background(rng, size)
    background_mean = image.mean(axis=(0, 1))
    owner = np.zeros((size, size), dtype=np.int32)
    full_areas: list[int] = []
    object_classes: list[int] = []
    for _ in range(int(rng.integers(1, params["max_objects"] + 1))):
        cls = int(rng.integers(len(classes)))
        mask = _place(rng, classes[cls], size, owner, full_areas)
        if mask is None:
            continue  # scene too crowded for this object; the first one always fits
        full_areas.append(int(mask.sum()))
        object_classes.append(cls)
        owner[mask] = len(full_areas)
        image[mask] = _object_fill(rng, mask, background_mean)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), owner, object_classes


def _place(rng: np.random.Generator, kind: str, size: int, owner: np.ndarray,
           full_areas: list[int]) -> np.ndarray | None:
    """Draws a shape whose occlusion leaves every earlier object mostly visible."""
    for _attempt in range(30):
        mask = rasterise_shape(rng, kind, size)
        if not full_areas:
            return mask
        visible = np.bincount(owner.ravel(), minlength=len(full_areas) + 1)[1:]
        lost = np.bincount(owner[mask], minlength=len(full_areas) + 1)[1:]
        if np.all(visible - lost >= _MIN_VISIBLE * np.asarray(full_areas)):
            return mask
    return None


def rasterise_shape(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """Returns a boolean mask of one random circle/square/triangle fully inside the image.

    The shape's extent is 15%..45% of the image side; squares and triangles are rotated.
    """
    extent = rng.uniform(0.15, 0.45) * size
    ys, xs = np.ogrid[0:size, 0:size]
    xs, ys = xs + 0.5, ys + 0.5  # pixel centres
    if kind == "circle":
        radius = extent / 2
        cx, cy = rng.uniform(radius, size - radius, 2)
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    # Vertex angles and radius: a square of side ``extent`` or an equilateral triangle.
    count, radius = (4, extent / math.sqrt(2)) if kind == "square" else (3, extent / math.sqrt(3))
    theta = rng.uniform(0, 2 * math.pi)
    # math (libm) rather than BLAS/SIMD numpy: identical bytes on every CPU for the manifest hash.
    verts = np.array([(radius * math.cos(theta + 2 * math.pi * k / count),
                       radius * math.sin(theta + 2 * math.pi * k / count)) for k in range(count)])
    low, high = verts.min(axis=0), verts.max(axis=0)
    verts = verts + rng.uniform(-low, size - high)
    inside_pos, inside_neg = np.ones((2, size, size), dtype=bool)
    for (x0, y0), (x1, y1) in zip(verts, np.roll(verts, -1, axis=0)):
        cross = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg  # convex: inside iff on one side of every edge


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Base colour + linear gradient + smooth blotches + pixel noise, float32[S,S,3]."""
    base = rng.uniform(30, 225, 3).astype(np.float32)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    slope = (rng.normal(size=2) * rng.uniform(0, 40)).astype(np.float32)
    ramp = (coords[None, :] * slope[0] + coords[:, None] * slope[1])[..., None]
    blotches = _smooth_noise(rng, size, int(rng.integers(3, 9))) * np.float32(rng.uniform(8, 35))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(rng.uniform(2, 12))
    return base + ramp + blotches + noise


def _object_fill(rng: np.random.Generator, mask: np.ndarray, background: np.ndarray
                 ) -> np.ndarray:
    """Shaded, noisy fill of the mask's pixels in a colour that stands out from ``background``."""
    colour = rng.uniform(0, 255, 3)
    for _ in range(50):
        if np.abs(colour - background).sum() > 150:
            break
        colour = rng.uniform(0, 255, 3)
    else:
        colour = 255 - background
    ys, xs = np.nonzero(mask)
    slope = rng.normal(size=2) * rng.uniform(0, 25) / mask.shape[0]
    shade = (xs * slope[0] + ys * slope[1])[:, None]
    noise = rng.standard_normal((len(xs), 3), dtype=np.float32) * rng.uniform(2, 8)
    return (colour + shade + noise).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
    """Bilinearly upsampled ``grid x grid`` Gaussian noise, float32[S,S,3] (low-frequency)."""
    coarse = rng.standard_normal((grid, grid, 3), dtype=np.float32)
    pos = np.linspace(0, grid - 1, size, dtype=np.float32)
    # Explicit lerps, not a BLAS product: elementwise IEEE ops give the same bytes on any CPU.
    i0 = np.minimum(pos.astype(np.int64), grid - 2)
    frac = (pos - i0)[:, None, None]
    rows = coarse[i0] * (1 - frac) + coarse[i0 + 1] * frac
    frac = frac.reshape(1, size, 1)
    return rows[:, i0] * (1 - frac) + rows[:, i0 + 1] * frac
