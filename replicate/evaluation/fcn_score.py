"""FCN-score of generated Cityscapes photos by the pix2pix authors' protocol (Isola et al. 2017,
sec. 4.1; junyanz/pytorch-CycleGAN-and-pix2pix scripts/eval_cityscapes, evaluate.py and util.py).

Per validation frame, as the authors' script does:

* the generated photo as the test script saves it (``tensor2im``: ``(x + 1) / 2 * 255``
  truncated to uint8), upsampled to the gtFine label size with a bilinear resize
  (``scipy.misc.imresize``'s default, which is PIL's BILINEAR);
* the frame's ``gtFine_labelIds.png`` mapped to the 19 trainIds with the Cityscapes label table
  (the ``cityscapesscripts`` package); every other id is ignored;
* the segmenter's argmax, accumulated into one confusion matrix over all frames, then per-pixel
  accuracy, mean per-class accuracy and mean class IoU (``get_scores``).

The same is done for the real photo of each pair (the authors' "ground truth" row: the real
photos at 256 px, upsampled the same way), so the instrument itself is checked: a segmenter that
does not score the real photos as the paper's FCN did (0.80 / 0.26 / 0.21) says nothing about
the generated ones.

The segmenter is the authors' own by default: their Caffe FCN-8s (``fcn-8s-cityscapes.caffemodel``,
run in torch by :mod:`replicate.evaluation.fcn8s`). A lab may name its torchvision
``fcn_resnet50`` with 19 Cityscapes classes instead (a ``.pth`` state dict, ImageNet-normalised RGB
input): the file's suffix picks the network (:func:`load_segmenter`). Each job records the file
and its sha256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from replicate.errors import DataError

NUM_CLASSES = 19
IGNORE = 255
GENERATED, REAL = "fcn", "fcn_real"   # metric prefixes of the two rows
EPS = 1e-12                            # util.py get_scores: added to every denominator
AUTHORS_SUFFIX = ".caffemodel"         # the authors' FCN-8s; any other file: the lab's fcn_resnet50


def train_id_table() -> np.ndarray:
    """uint8[256]: Cityscapes labelId -> trainId (19 classes), IGNORE for ids not evaluated."""
    from cityscapesscripts.helpers.labels import labels

    table = np.full(256, IGNORE, dtype=np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < NUM_CLASSES:
            table[label.id] = label.trainId
    return table


def label_train_ids(path: Path, table: np.ndarray) -> np.ndarray:
    """A ``*_gtFine_labelIds.png`` as trainIds [H, W]; DataError naming a file that is not one."""
    try:
        with Image.open(path) as image:
            ids = np.array(image)
    except (OSError, ValueError) as exc:
        raise DataError(str(path), f"not a readable label image ({exc})") from None
    if ids.ndim != 2:
        raise DataError(str(path), f"a labelIds image has one channel, this has shape {ids.shape}")
    return table[ids.astype(np.int64).clip(0, 255)]


def saved_image(image: torch.Tensor) -> np.ndarray:
    """A [3, H, W] image in [-1, 1] as the pix2pix test script saves it: uint8 [H, W, 3], truncated."""
    pixels = (image.detach().float().cpu().clamp(-1, 1) + 1) / 2.0 * 255.0
    return pixels.permute(1, 2, 0).numpy().astype(np.uint8)


def upsampled(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``scipy.misc.imresize(image, (height, width))``: PIL's bilinear resize of the uint8 image."""
    return np.array(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def confusion(truth: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """``fast_hist``: counts [true class, predicted class] over the pixels with a true class, as
    one flat ``bincount`` of ``19 * truth + guess``.

    The authors' FCN has a 20th output (index 19) that the flat count does not keep apart: on a
    pixel of class c < 18 it is counted as class c + 1 predicted as road (0), and a frame where it
    falls on a bicycle pixel (18) overflows the 19 x 19 counts and is left out whole (fast_hist
    returns 0). Kept so, because the paper's numbers were counted so.
    """
    keep = (truth >= 0) & (truth < NUM_CLASSES)
    flat = np.bincount(NUM_CLASSES * truth[keep].astype(np.int64) + guess[keep].astype(np.int64),
                       minlength=NUM_CLASSES ** 2)
    if flat.size != NUM_CLASSES ** 2:
        return np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    return flat.reshape(NUM_CLASSES, NUM_CLASSES)


def fcn_scores(hist: np.ndarray, prefix: str = GENERATED) -> dict[str, float]:
    """``get_scores``: per-pixel accuracy, mean per-class accuracy and mean class IoU, each
    denominator plus 1e-12, so a class absent from truth (and prediction) counts as 0 in the
    means over all 19, as it does in the authors' numbers."""
    hist = hist.astype(np.float64)
    diag = np.diag(hist)
    per_class = diag / (hist.sum(1) + EPS)
    iou = diag / (hist.sum(1) + hist.sum(0) - diag + EPS)
    return {f"{prefix}_per_pixel_acc": float(diag.sum() / (hist.sum() + EPS)),
            f"{prefix}_per_class_acc": float(np.nanmean(per_class)),
            f"{prefix}_class_iou": float(np.nanmean(iou))}


def frames_of_pairs(pair_files: list[Path], labels_dir: Path) -> list[Path]:
    """The gtFine labelIds file of each pair file, in the pairs' order.

    The authors' prepare_cityscapes_dataset.py writes pair ``i.jpg`` from the i-th frame of the
    sorted ``gtFine/<split>/*/*_color.png``; the same sort over ``*_labelIds.png`` finds it again.
    """
    frames = sorted(labels_dir.glob("*/*_gtFine_labelIds.png"))
    if not frames:
        raise DataError(str(labels_dir), "no */*_gtFine_labelIds.png here (the Cityscapes gtFine folder of the split)")
    out = []
    for path in pair_files:
        if not path.stem.isdigit() or int(path.stem) >= len(frames):
            raise DataError(str(path), f"pair files are named by their frame's index among the {len(frames)} sorted "
                                       f"gtFine frames (prepare_cityscapes_dataset.py: 0.jpg, 1.jpg, ...)")
        out.append(frames[int(path.stem)])
    return out


def load_segmenter(path: Path, device: str = "cpu") -> Any:
    """The segmenter in ``path``: the authors' FCN-8s from a ``.caffemodel``, else the lab's
    torchvision ``fcn_resnet50`` state dict; each maps uint8 RGB [H, W, 3] to classes [H, W].

    Raises:
        DataError: naming ``path``: not a file of that network.
    """
    if path.suffix == AUTHORS_SUFFIX:
        from replicate.evaluation.fcn8s import AuthorsFCN8s

        return AuthorsFCN8s(path, device)
    return Segmenter(path, device)


class Segmenter:
    """The lab's FCN: torchvision ``fcn_resnet50`` with 19 Cityscapes classes, from a state dict."""

    def __init__(self, path: Path, device: str = "cpu"):
        from torchvision.models.segmentation import fcn_resnet50

        from replicate.runner.checkpoint import load_file

        state = load_file(path)
        if isinstance(state, dict):
            state = state.get("model", state)
        if not isinstance(state, dict):
            raise DataError(str(path), "holds no state dict")
        self.net = fcn_resnet50(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                aux_loss=any(str(k).startswith("aux_classifier.") for k in state))
        try:
            self.net.load_state_dict(state)
        except RuntimeError as exc:
            raise DataError(str(path), f"not an fcn_resnet50 with {NUM_CLASSES} classes: "
                                       f"{str(exc).splitlines()[-1].strip()[:200]}") from None
        self.net.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> predicted trainIds [H, W]."""
        x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
        logits = self.net(((x - mean) / std)[None].to(self.device))["out"]
        return logits.argmax(1)[0].cpu().numpy()


class FCNScoreEvaluator:
    """Both rows of the authors' table over the evaluated frames, in the loader's order:
    ``fcn_*`` for the generated photos, ``fcn_real_*`` for the real ones."""

    def __init__(self, segmenter: Any, frames: list[Path]):
        self.segmenter = segmenter
        self.frames = frames
        self.table = train_id_table()
        self.seen = 0
        self.instrument: dict[str, Any] | None = None   # the segmenter's file and hash, recorded on the job
        self.hists = {GENERATED: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64),
                      REAL: np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)}

    def update(self, predictions: list[dict]) -> None:
        for batch in predictions:
            for generated, real in zip(batch["pred"], batch["target"]):
                if self.seen >= len(self.frames):
                    raise DataError(str(self.frames[-1].parent.parent), "more generated images than gtFine frames")
                truth = label_train_ids(self.frames[self.seen], self.table)
                for row, image in ((GENERATED, generated), (REAL, real)):
                    photo = upsampled(saved_image(image), *truth.shape)
                    self.hists[row] += confusion(truth, self.segmenter(photo))
                self.seen += 1

    def compute(self) -> dict[str, float]:
        if self.hists[GENERATED].sum() == 0:
            raise RuntimeError("FCNScoreEvaluator.compute() called before any labelled pixel was seen")
        return {**fcn_scores(self.hists[GENERATED], GENERATED), **fcn_scores(self.hists[REAL], REAL)}
