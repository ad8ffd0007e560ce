"""xingyizhou/CenterNet's test-time procedure, restated for tests from its documented behaviour
(src/lib/detectors/base_detector.py pre_process, ctdet.py, models/decode.py ctdet_decode,
utils/post_process.py ctdet_post_process, datasets/dataset/coco.py convert_eval_format) with the
same library it uses, OpenCV: the affine warp, its inverse and the results file's rounding; and
its training targets (datasets/sample/ctdet.py, utils/image.py; commit 4c50fd3a46bd). The
product's CenterNet path is compared with this on the same inputs; nothing here is imported by
the product.

Also the released checkpoint's layout: the key names and shapes ``resnet_dcn.py``'s PoseResNet
(ResDCN-18) gives, from torchvision's ResNet-18 for the trunk (the reference's trunk uses its
names) and the reference's up-sampling and head modules written out.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PAD = 31                  # opts.py: opt.pad for every non-hourglass arch
DOWN_RATIO = 4
MEAN = np.array([0.40789654, 0.44719302, 0.47026115], dtype=np.float32)   # coco.py, BGR order
STD = np.array([0.28863828, 0.27408164, 0.27809835], dtype=np.float32)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def affine(centre: np.ndarray, src_width: float, out_w: int, out_h: int, inverse: bool = False) -> np.ndarray:
    """The reference's three-point affine at rotation 0: ``centre`` to the output's centre, a
    width of ``src_width`` to ``out_w``."""
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0], dst[0] = centre, (out_w * 0.5, out_h * 0.5)
    src[1] = centre + np.array([0, -0.5 * src_width], dtype=np.float32)
    dst[1] = dst[0] + np.array([0, -0.5 * out_w], dtype=np.float32)
    src[2], dst[2] = _third_point(src[0], src[1]), _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def pre_process_keep_res(bgr: np.ndarray) -> tuple[np.ndarray, dict]:
    """``--keep_res`` input of one BGR uint8 image: float32 [3, H', W'] and the meta (c, s)."""
    height, width = bgr.shape[:2]
    inp_h, inp_w = (height | PAD) + 1, (width | PAD) + 1
    centre = np.array([width // 2, height // 2], dtype=np.float32)
    warp = affine(centre, float(inp_w), inp_w, inp_h)
    canvas = cv2.warpAffine(bgr, warp, (inp_w, inp_h), flags=cv2.INTER_LINEAR)
    image = ((canvas / 255.0 - MEAN) / STD).astype(np.float32)
    return image.transpose(2, 0, 1), {"c": centre, "s": float(inp_w), "out_w": inp_w // DOWN_RATIO,
                                      "out_h": inp_h // DOWN_RATIO}


def decode_and_post_process(hm: torch.Tensor, wh: torch.Tensor, reg: torch.Tensor, meta: dict,
                            valid_ids: list[int], k: int = 100) -> list[dict]:
    """One image's heads (batch of one) -> the results file's entries (as COCOeval reads them)."""
    heat = hm.sigmoid()
    heat = heat * (torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
    _, classes, height, width = heat.shape
    per_class_scores, per_class_inds = heat.view(1, classes, -1).topk(k)        # top K per class
    scores, picked = per_class_scores.view(1, -1).topk(k)                        # then top K of all
    cls = (picked // k).view(-1)
    inds = per_class_inds.view(1, -1).gather(1, picked).view(-1)
    ys, xs = (inds // width).float(), (inds % width).float()
    off = reg[0].view(2, -1)[:, inds]
    size = wh[0].view(2, -1)[:, inds]
    xs, ys = xs + off[0], ys + off[1]
    boxes = torch.stack([xs - size[0] / 2, ys - size[1] / 2, xs + size[0] / 2, ys + size[1] / 2], 1).numpy()
    back = affine(meta["c"], meta["s"], meta["out_w"], meta["out_h"], inverse=True)
    corners = boxes.reshape(-1, 2)
    corners = (np.concatenate([corners, np.ones((len(corners), 1))], 1) @ back.T).reshape(-1, 4).astype(np.float32)
    entries = []
    for box, score, c in zip(corners, scores.view(-1).tolist(), cls.tolist()):
        box = box.copy()
        box[2] -= box[0]
        box[3] -= box[1]
        entries.append({"category_id": valid_ids[c], "bbox": [float(f"{v:.2f}") for v in box],
                        "score": float(f"{score:.2f}")})
    return entries


def released_layout(num_classes: int = 80, head_conv: int = 64) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``ctdet_coco_resdcn18.pth``'s state dict (ResDCN-18, 80 classes)."""
    from torchvision.models import resnet18

    layout = {k: tuple(v.shape) for k, v in resnet18(weights=None).state_dict().items() if not k.startswith("fc.")}

    def batch_norm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            layout[f"{prefix}.{name}"] = (channels,)
        layout[f"{prefix}.num_batches_tracked"] = ()

    inplanes = 512
    for stage, planes in enumerate((256, 128, 64)):   # _make_deconv_layer: DCN, BN, ReLU, ConvT, BN, ReLU
        base = 6 * stage
        layout[f"deconv_layers.{base}.weight"] = (planes, inplanes, 3, 3)
        layout[f"deconv_layers.{base}.bias"] = (planes,)
        layout[f"deconv_layers.{base}.conv_offset_mask.weight"] = (27, inplanes, 3, 3)
        layout[f"deconv_layers.{base}.conv_offset_mask.bias"] = (27,)
        batch_norm(f"deconv_layers.{base + 1}", planes)
        layout[f"deconv_layers.{base + 3}.weight"] = (planes, planes, 4, 4)
        batch_norm(f"deconv_layers.{base + 4}", planes)
        inplanes = planes
    for head, channels in (("hm", num_classes), ("wh", 2), ("reg", 2)):
        layout[f"{head}.0.weight"] = (head_conv, 64, 3, 3)
        layout[f"{head}.0.bias"] = (head_conv,)
        layout[f"{head}.2.weight"] = (channels, head_conv, 1, 1)
        layout[f"{head}.2.bias"] = (channels,)
    return layout


def released_file_state(seed: int = 0, module_prefix: bool = False, batches_tracked: bool = True) -> dict:
    """A file in the released format (``{'epoch', 'state_dict'}``, as the reference's save_model
    writes it) with small random weights and unit variances, so a forward pass stays finite."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in released_layout().items():
        if key.endswith("num_batches_tracked"):
            if batches_tracked:
                state[key] = torch.tensor(1000)
            continue
        if key.endswith("running_var"):
            value = torch.ones(shape)
        elif key.endswith("running_mean"):
            value = torch.zeros(shape)
        else:
            value = torch.randn(shape, generator=generator) * 0.05
        state[("module." if module_prefix else "") + key] = value
    return {"epoch": 140, "state_dict": state}


def train_sample_geometry(bgr: np.ndarray, boxes: np.ndarray, scale: float, cx: float, cy: float, flip: bool,
                          size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """ctdet.py's training warp for given draws: the input image (uint8 BGR warped, /255) and the
    boxes mapped as the reference maps them (corners through the input transform)."""
    width = bgr.shape[1]
    boxes = boxes.astype(np.float32).copy()
    centre = np.array([cx, cy], dtype=np.float32)
    if flip:
        bgr = bgr[:, ::-1, :].copy()
        centre[0] = width - centre[0] - 1
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]] - 1
    warp = affine(centre, scale, size, size)
    image = cv2.warpAffine(bgr.astype(np.float32) / 255.0, warp, (size, size), flags=cv2.INTER_LINEAR)
    corners = boxes.reshape(-1, 2)
    mapped = (np.concatenate([corners, np.ones((len(corners), 1))], 1) @ warp.T).reshape(-1, 4)
    return image, mapped


def colour_aug(bgr01: np.ndarray, order: list[int], alphas: list[float], lighting: np.ndarray) -> np.ndarray:
    """utils/image.py color_aug for given draws on a float BGR image (its functions in ``order``:
    0 brightness, 1 contrast, 2 saturation)."""
    image = bgr01.astype(np.float32).copy()
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    grey_mean = grey.mean()
    for op, alpha in zip(order, alphas):
        if op == 0:
            image *= alpha
        elif op == 1:
            image = image * alpha + grey_mean * (1 - alpha)
        else:
            image = image * alpha + grey[:, :, None] * (1 - alpha)
    eig_val = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
    eig_vec = np.array([[-0.58752847, -0.69563484, 0.41340352], [-0.5832747, 0.00994535, -0.81221408],
                        [-0.56089297, 0.71832671, 0.41158938]], dtype=np.float32)
    return image + eig_vec @ (eig_val * lighting)


def _gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """utils/image.py gaussian_radius (CornerNet's three quadratic roots; the smallest)."""
    roots = []
    for a, b, c in ((1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)),
                    (4, 2 * (height + width), (1 - min_overlap) * width * height),
                    (4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height)):
        roots.append((b + np.sqrt(b ** 2 - 4 * a * c)) / 2)
    return min(roots)


def _draw_umich_gaussian(heatmap: np.ndarray, x: int, y: int, radius: int) -> None:
    """utils/image.py draw_umich_gaussian: a (2r+1)^2 gaussian of sigma (2r+1)/6, negligible tails
    zeroed, maxed into the heatmap around (x, y) where it fits."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    kernel = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    patch = heatmap[y - top:y + bottom, x - left:x + right]
    piece = kernel[radius - top:radius + bottom, radius - left:radius + right]
    if min(piece.shape) > 0 and min(patch.shape) > 0:
        np.maximum(patch, piece, out=patch)


def ctdet_train_targets(anns: list[dict], width: int, channel_of: dict[int, int], num_classes: int,
                        scale: float, cx: float, cy: float, flip: bool, size: int = 512,
                        max_objs: int = 128) -> dict[str, np.ndarray]:
    """src/lib/datasets/sample/ctdet.py CTDetDataset.__getitem__'s training targets for given
    draws (scale ``s``, centre ``c`` before the flip, flip): ``anns`` are every annotation of the
    image as ``coco.getAnnIds(imgIds=[img_id])`` returns them, crowd regions included (no
    iscrowd argument); the first ``max_objs`` are drawn: box corners flipped, through the output
    affine, clipped to [0, out - 1], and where still of positive size a gaussian at the int
    centre with wh, ind, reg and reg_mask in slot k."""
    out = size // DOWN_RATIO
    centre = np.array([cx, cy], dtype=np.float32)
    if flip:
        centre[0] = width - centre[0] - 1
    trans_output = affine(centre, scale, out, out)
    hm = np.zeros((num_classes, out, out), dtype=np.float32)
    wh, reg = np.zeros((max_objs, 2), dtype=np.float32), np.zeros((max_objs, 2), dtype=np.float32)
    ind, reg_mask = np.zeros(max_objs, dtype=np.int64), np.zeros(max_objs, dtype=np.uint8)
    for k, ann in enumerate(anns[:max_objs]):
        x, y, w, h = ann["bbox"]
        box = np.array([x, y, x + w, y + h], dtype=np.float32)
        if flip:
            box[[0, 2]] = width - box[[2, 0]] - 1
        box[:2] = trans_output @ np.array([box[0], box[1], 1.0])
        box[2:] = trans_output @ np.array([box[2], box[3], 1.0])
        box[[0, 2]] = np.clip(box[[0, 2]], 0, out - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, out - 1)
        bh, bw = box[3] - box[1], box[2] - box[0]
        if bh > 0 and bw > 0:
            radius = max(0, int(_gaussian_radius(np.ceil(bh), np.ceil(bw))))
            ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
            ct_int = ct.astype(np.int32)
            _draw_umich_gaussian(hm[channel_of[ann["category_id"]]], int(ct_int[0]), int(ct_int[1]), radius)
            wh[k] = bw, bh
            ind[k] = ct_int[1] * out + ct_int[0]
            reg[k] = ct - ct_int
            reg_mask[k] = 1
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask}
