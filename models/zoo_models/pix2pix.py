"""pix2pix: a U-Net generator and a PatchGAN discriminator trained with cGAN + lambda * L1.

Paper: Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017 (arXiv:1611.07004). Reference implementation:
junyanz/pytorch-CycleGAN-and-pix2pix (BSD licence): ``models/networks.py`` (UnetGenerator,
UnetSkipConnectionBlock, NLayerDiscriminator, GANLoss, init_weights) and
``models/pix2pix_model.py`` (the D-then-G update). The networks below follow those classes
layer for layer, so the full variant has the reference's parameter counts (G 54,413,955 with
unet_256 / ngf 64 / batch norm; D 2,768,705 with n_layers 3 / ndf 64 on 6 input channels).

The harness optimizes one ``nn.Module``; :class:`Pix2Pix` holds both networks so checkpoints
carry both, and :class:`Pix2PixTask` steps their two optimizers itself (manual optimization).

Inference: the harness evaluates in ``eval()`` mode (running batch-norm statistics, no dropout,
the reference's ``--eval``). The paper instead runs G at test time as in training (section 3.3:
dropout on, batch norm on the test batch); ``recipe.extra.paper_inference: true`` does that, as
the full tier does. The smoke tier's ``translation`` is explained in models/zoo_models/conf/model/pix2pix.yaml.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from replicate.errors import ConfigError
from replicate.runner.mixed_precision import MixedPrecision
from replicate.weights_file import WeightsFile, checked_tier_file
from replicate.zoo.registry import register_model
from replicate.zoo.task import Task

# What G translates (recipe.extra.translation). label_to_photo is the paper's Cityscapes task.
# The other two read the pairs the other way round (the reference's --direction BtoA);
# photo_to_foreground also merges every class of the label map into one white foreground.
TRANSLATIONS = ("label_to_photo", "photo_to_label", "photo_to_foreground")


# --------------------------------------------------------------------------- networks
class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-conv, the inner levels, up-conv, and the skip concatenation.

    As the reference's ``UnetSkipConnectionBlock``: batch norm makes the convolutions bias-free;
    the outermost level has no norm and ends in tanh; the innermost has no down-norm (its
    output is 1x1 at 256 px, where batch statistics of one image are undefined).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: Optional[int] = None,
                 submodule: Optional[nn.Module] = None, outermost: bool = False,
                 innermost: bool = False, use_dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        downnorm, upnorm = nn.BatchNorm2d(inner_nc), nn.BatchNorm2d(outer_nc)
        layers: list[nn.Module]
        if outermost:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            assert submodule is not None
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:  # the paper's only noise source: dropout in the 8*ngf-wide levels
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The reference's ``UnetGenerator``: ``num_downs`` levels, the image shrinks to 1/2**num_downs."""

    def __init__(self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, use_dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (the four widening levels + the bottom), got {num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):  # the 8*ngf-wide middle levels carry the dropout
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout)
        for mult in (4, 2, 1):
            block = UnetSkipConnectionBlock(ngf * mult, ngf * mult * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The reference's ``NLayerDiscriminator``: n_layers 3 gives the 70x70 PatchGAN.

    Output: one logit per (overlapping) patch, e.g. [B,1,30,30] for a 256x256 input.
    """

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last widening conv keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """The reference's ``init_type='normal'``: conv weights N(0, 0.02), BN weights N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class Pix2Pix(nn.Module):
    """Both networks in one module, so the harness checkpoints and moves them together."""

    def __init__(self, generator: UnetGenerator, discriminator: NLayerDiscriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.generator(source)


@contextmanager
def paper_inference(generator: nn.Module) -> Iterator[None]:
    """Runs ``generator`` as in training (dropout, batch statistics) without touching its state.

    ``track_running_stats=False`` makes batch norm use the batch's statistics and leave its
    running buffers alone, so evaluation never changes the checkpointed model.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = generator.training
    generator.train()
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
        generator.train(was_training)


def unet_levels(arch: Any) -> int:
    """The U-Net's ``num_downs``: from ``generator`` (``unet_<size>``: log2(size) levels) unless
    ``num_downs`` overrides it."""
    name = str(arch.get("generator", "unet_256"))
    if not name.startswith("unet_") or not name[5:].isdigit():
        raise ConfigError("arch.generator", f"{name!r} is not allowed; allowed: unet_<size>, e.g. unet_256")
    return int(arch.get("num_downs") or round(math.log2(int(name[5:]))))


def build_pix2pix(arch: Any, channels: int = 3) -> Pix2Pix:
    """Builds both networks from a variant's ``arch`` (keys as the reference's options).

    ``generator`` is ``unet_<size>`` (the reference's netG names: unet_256 has 8 levels, i.e.
    log2(size)); ``num_downs`` may override it. The discriminator sees source and image stacked
    (2 * channels), as the reference's conditional D does.
    """
    generator = UnetGenerator(channels, channels, unet_levels(arch), int(arch.get("ngf", 64)),
                              use_dropout=bool(arch.get("dropout", True)))
    discriminator = NLayerDiscriminator(2 * channels, int(arch.get("ndf", 64)), int(arch.get("n_layers", 3)))
    init_weights(generator)
    init_weights(discriminator)
    return Pix2Pix(generator, discriminator)


# ------------------------------------------------------------------------------ losses
def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The reference's ``GANLoss('vanilla')``: BCE with logits against an all-1 or all-0 map."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def discriminator_loss(model: Pix2Pix, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """D's loss, halved as in the reference so D learns slower than G (paper, section 3.3)."""
    d = model.discriminator
    return 0.5 * (gan_loss(d(torch.cat([source, fake], 1)), False) + gan_loss(d(torch.cat([source, real], 1)), True))


def generator_losses(model: Pix2Pix, source: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                     lambda_l1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cGAN term, lambda * L1 term) of G's objective, eq. 4 of the paper."""
    gan = gan_loss(model.discriminator(torch.cat([source, fake], 1)), True)
    return gan, lambda_l1 * nn.functional.l1_loss(fake, real)


# ------------------------------------------------------------------------------- data
class JitterPairs(Dataset):
    """The paper's random jitter, applied to label and photo alike (section 6.2 of the appendix).

    Resize to ``load_size`` and crop a random ``crop_size`` window (the reference's
    ``--preprocess resize_and_crop``, 286 -> 256), then mirror with probability 0.5. Draws from
    torch's global generator, which the harness seeds and checkpoints, so a resumed run sees the
    same jitter.
    """

    def __init__(self, dataset: Dataset, crop_size: int, load_size: Optional[int] = None, flip: bool = True):
        self.dataset, self.crop_size, self.load_size, self.flip = dataset, crop_size, load_size, flip

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]  # the paired dataset has a length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label, photo = self.dataset[index]
        if self.load_size and self.load_size > self.crop_size:
            size = (self.load_size, self.load_size)
            # nearest keeps the label map's colour codes exact; the photo is resampled smoothly
            label = nn.functional.interpolate(label[None], size=size, mode="nearest")[0]
            photo = nn.functional.interpolate(photo[None], size=size, mode="bicubic", align_corners=False)[0]
            top, left = (int(v) for v in torch.randint(self.load_size - self.crop_size + 1, (2,)))
            window = (slice(None), slice(top, top + self.crop_size), slice(left, left + self.crop_size))
            label, photo = label[window], photo[window].clamp(-1, 1)
        if self.flip and torch.rand(()) < 0.5:
            label, photo = label.flip(-1), photo.flip(-1)
        return label, photo


# ------------------------------------------------------------------------- evaluation
class ImagePairEvaluator:
    """Adapts :class:`ImageToImageEvaluator` to the harness's ``update(predictions)``; with
    ``layout``, also scores each generated photo's layout against its label map (the synthetic
    pairs' exact FCN-score, replicate/evaluation/layout_score.py)."""

    def __init__(self, layout: Optional[Any] = None) -> None:
        from replicate.evaluation.image import ImageToImageEvaluator

        self.inner = ImageToImageEvaluator()
        self.layout = layout

    def update(self, predictions: list[dict]) -> None:
        for p in predictions:
            pred, target, source = p["pred"], p["target"], p["source"]
            if pred.dim() == 3:
                pred, target, source = pred[None], target[None], source[None]
            self.inner.update(pred, target)
            if self.layout is not None:
                self.layout.update(source, pred)

    def compute(self) -> dict[str, float]:
        return {**self.inner.compute(), **(self.layout.compute() if self.layout is not None else {})}


# ------------------------------------------------------------------------------- task
@register_model("pix2pix")
class Pix2PixTask(Task):
    """pix2pix on paired (label map, photo) data; batches are (labels, photos) tensors."""

    manual_optimization = True
    _segmenter: Optional[tuple[WeightsFile, str]] = None   # the checked segmenter file and its sha256

    # ------------------------------------------------------------------ config
    @property
    def extra(self) -> Any:
        recipe = self.ctx.tier_cfg.recipe
        return recipe.extra if recipe is not None else {}

    def tier_key(self) -> str:
        """``model.tiers.<name>`` of this job's tier, for error messages that name the key."""
        name = next((n for n, t in self.ctx.model_cfg.tiers.items() if t == self.ctx.tier_cfg), "<tier>")
        return f"model.tiers.{name}"

    def translation(self) -> str:
        translation = str(self.extra.get("translation", "label_to_photo"))
        if translation not in TRANSLATIONS:
            raise ConfigError(f"{self.tier_key()}.recipe.extra.translation",
                              f"{translation!r} is not allowed; allowed: {', '.join(TRANSLATIONS)}")
        return translation

    def segmenter(self) -> Optional[tuple[WeightsFile, str]]:
        """The FCN a tier scores its generated photos with (``segmenter``: the FCN-score) and its
        sha256, after checking the file is there and, where a hash was published, that it matches.

        Raises:
            ConfigError: the translation is not label -> photo (the FCN segments photos).
            DataError: the file is missing or is not the published one.
        """
        if self.ctx.tier_cfg.get("segmenter") is None:
            return None
        if self.translation() != "label_to_photo":
            raise ConfigError(f"{self.tier_key()}.recipe.extra.translation",
                              "FCN-scores segment generated photos: the translation must be label_to_photo")
        if self._segmenter is None:   # checked once: prepare_data's call, before training
            from replicate.evaluation.fcn_score import load_segmenter

            self._segmenter = checked_tier_file(self.ctx.tier_cfg, "segmenter")
            if self._segmenter is not None:   # read too: a file that is not the network fails now, not after training
                load_segmenter(self._segmenter[0].path)
        return self._segmenter

    def prepare_data(self) -> str:
        self.segmenter()  # fail before hours of training, not at the final evaluation
        self.translation()
        return super().prepare_data()

    # ------------------------------------------------------------------- model
    @classmethod
    def input_size_multiple(cls, model_cfg: Any, variant: str) -> Optional[int]:
        """2**num_downs: each U-Net level halves the image and its skip joins it again."""
        return 2 ** unet_levels(model_cfg.variants[variant].arch)

    def build_model(self, variant: str) -> Pix2Pix:
        return build_pix2pix(self.ctx.model_cfg.variants[variant].arch)

    def trainable_parameters(self, model: Pix2Pix) -> int:
        """The generator's count: the config's (and the reference printout's) full-variant figure."""
        return sum(p.numel() for p in model.generator.parameters() if p.requires_grad)

    def load_checkpoint(self, model: Pix2Pix, path: Any) -> bool:
        """A generator saved by the reference (``<epoch>_net_G.pth``: G's bare state dict, no
        ``module.`` prefix, BaseModel.save_networks) into ``model.generator``, exactly; its
        ``<epoch>_net_D.pth`` beside it, when there, into the discriminator. Other files: the loop's."""
        from replicate.runner.checkpoint import load_state_file

        path = Path(path)
        if not path.name.endswith("_net_G.pth"):
            return False
        load_state_file(model.generator, path)
        discriminator = path.with_name(path.name[: -len("_net_G.pth")] + "_net_D.pth")
        if discriminator.is_file():
            load_state_file(model.discriminator, discriminator)
        return True

    # -------------------------------------------------------------------- data
    def build_dataset(self, split: str, *, train: bool) -> Dataset:
        from replicate.data.paired_dataset import PairedImages

        data = self.ctx.data_cfg
        dataset = PairedImages(Path(data.root), data.splits[split].pairs, size=self.ctx.input_size,
                               shuffle_pairs_seed=self.ctx.seed if train and self.ctx.shuffle_labels else None)
        if not train:
            return dataset
        return JitterPairs(dataset, self.ctx.input_size, self.extra.get("load_size"),
                           flip=bool(self.extra.get("flip", True)))

    def collate(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        labels, photos = zip(*items)
        return torch.stack(labels), torch.stack(photos)

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def source_target(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(G's input, the image G must produce) of a (labels, photos) batch, by translation."""
        labels, photos = batch
        translation = self.translation()
        if translation == "label_to_photo":
            return labels, photos
        if translation == "photo_to_foreground":
            # Label maps are black (-1, -1, -1) on background and a saturated colour elsewhere.
            foreground = (labels > 0).any(1, keepdim=True)
            labels = torch.where(foreground, 1.0, -1.0).to(labels.dtype).expand_as(labels).contiguous()
        return photos, labels

    def draw_sample(self, item: Any, names: Optional[Mapping[int, str]] = None) -> torch.Tensor:
        """A 2x2 tile: label | photo above; their 50/50 blend (alignment) | G's target below.

        Square, because the harness's sample grid resizes every tile to a square.
        """
        target = self.source_target((item[0][None], item[1][None]))[1][0]
        label, photo, target = (((t.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8) for t in (*item, target))
        blend = ((label.float() + photo.float()) / 2).round().to(torch.uint8)
        return torch.cat([torch.cat([label, photo], -1), torch.cat([blend, target], -1)], -2)

    # ---------------------------------------------------------------- training
    def configure_optimizers(self, model: Pix2Pix, recipe: Any, lr: float, build: Any) -> dict[str, Any]:
        """One Adam per network (the reference's optimizer_G / optimizer_D, same lr and betas)."""
        return {"G": build(recipe, model.generator.parameters(), lr),
                "D": build(recipe, model.discriminator.parameters(), lr)}

    def training_step(self, model: Pix2Pix, batch: Any, optimizers: Optional[dict[str, Any]] = None,
                      mixed: Optional[MixedPrecision] = None) -> dict[str, Any]:
        """The reference's ``optimize_parameters``: D on a detached fake, then G against the updated D.

        Under amp (``mixed``, the loop's) each network's forward pass runs in autocast, each loss is
        scaled before its backward pass and each optimizer steps through the scaler, in the
        reference's order; the loop updates the scale once after both steps (PyTorch's AMP recipe
        for several models, losses and optimizers). In fp32 these are the plain operations.
        """
        assert optimizers is not None   # manual_optimization: the loop passes them
        mixed = mixed or MixedPrecision.for_device(False, "cpu")   # called alone: plain fp32
        source, real = self.source_target(batch)
        with mixed.autocast():
            fake = model.generator(source)
        optimizers["D"].zero_grad(set_to_none=True)
        with mixed.autocast():
            loss_d = discriminator_loss(model, source, real, fake.detach())
        mixed.backward(loss_d)
        mixed.step(optimizers["D"])
        model.discriminator.requires_grad_(False)  # G's step must not accumulate D gradients
        try:
            optimizers["G"].zero_grad(set_to_none=True)
            with mixed.autocast():
                loss_gan, loss_l1 = generator_losses(model, source, real, fake,
                                                     float(self.extra.get("lambda_l1", 100.0)))
                loss_g = loss_gan + loss_l1
            mixed.backward(loss_g)
            mixed.step(optimizers["G"])
        finally:
            model.discriminator.requires_grad_(True)
        return {"loss": loss_g.detach(), "loss_G_GAN": loss_gan.detach(), "loss_G_L1": loss_l1.detach(),
                "loss_D": loss_d.detach()}

    def check_loss(self, model: Pix2Pix, batch: Any) -> torch.Tensor:
        """G's objective plus D's loss: every parameter of both networks gets a gradient."""
        source, real = self.source_target(batch)
        fake = model.generator(source)
        loss_gan, loss_l1 = generator_losses(model, source, real, fake, float(self.extra.get("lambda_l1", 100.0)))
        return loss_gan + loss_l1 + discriminator_loss(model, source, real, fake.detach())

    def ignored_inputs(self, model: Pix2Pix, dataset: Any) -> list[str]:
        """G reads its source; the conditional D reads the source beside the image (the reference's
        ``torch.cat((real_A, fake_B), 1)``): each must move its network's output. Run in inference
        mode on the first two pairs, the model's mode and state put back."""
        from replicate.runner.input_dependence import ignored_inputs

        device = next(model.parameters()).device
        source, image = (t.to(device) for t in self.source_target(
            self.collate([dataset[i] for i in range(min(2, len(dataset)))])))
        was_training = model.training
        model.eval()   # batch norm reads its running statistics and writes nothing
        try:
            return [*ignored_inputs("the generator", lambda source: model.generator(source), {"source": source}),
                    *ignored_inputs("the discriminator",
                                    lambda condition, image: model.discriminator(torch.cat([condition, image], 1)),
                                    {"condition": source, "image": image})]
        finally:
            model.train(was_training)

    # -------------------------------------------------------------- evaluation
    def evaluation_is_stochastic(self) -> bool:
        return bool(self.extra.get("paper_inference", False))   # dropout on, the test batch's statistics

    def predict(self, model: Pix2Pix, batch: Any) -> list[dict]:
        source, real = self.source_target(batch)
        if self.extra.get("paper_inference", False):
            with paper_inference(model.generator):
                fake = model.generator(source)
        else:
            fake = model.generator(source)
        return [{"pred": fake, "target": real, "source": source}]

    def layout_score(self) -> Optional[Any]:
        """The layout score's evaluator where the renderer knows each class's colours (the
        synthetic shapes pairs, label -> photo); None elsewhere (Cityscapes has the FCN-score)."""
        from replicate.data.shapes import class_colours
        from replicate.evaluation.layout_score import LayoutScoreEvaluator

        data = self.ctx.data_cfg
        if str(data.get("kind")) != "synthetic" or self.translation() != "label_to_photo":
            return None
        return LayoutScoreEvaluator(*class_colours(data.classes))

    def build_evaluator(self, split: str) -> Any:
        from replicate.data.paired_dataset import PairedImages
        from replicate.evaluation.fcn_score import FCNScoreEvaluator, frames_of_pairs, load_segmenter

        segmenter = self.segmenter()
        if segmenter is None:
            return ImagePairEvaluator(self.layout_score())
        weights, digest = segmenter
        data = self.ctx.data_cfg
        labels = data.splits[split].get("labels")
        if not labels:
            raise ConfigError(f"datasets.{data.name}.splits.{split}.labels",
                              "the FCN-score reads the split's gtFine labelIds: name its gtFine folder")
        pairs = PairedImages(Path(data.root), data.splits[split].pairs)   # the loader's order
        frames = frames_of_pairs([label for label, _ in pairs.samples], Path(data.root) / str(labels))
        evaluator = FCNScoreEvaluator(load_segmenter(weights.path, "cuda" if torch.cuda.is_available() else "cpu"),
                                      frames)
        evaluator.instrument = {"path": str(weights.path), "sha256": digest, "source": weights.source}
        return evaluator
