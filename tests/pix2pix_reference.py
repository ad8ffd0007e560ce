"""junyanz/pytorch-CycleGAN-and-pix2pix's saved-network layout, restated for tests from its
models/networks.py (UnetGenerator / UnetSkipConnectionBlock with batch norm, NLayerDiscriminator):
key -> shape of ``<epoch>_net_G.pth`` and ``<epoch>_net_D.pth``. The product's networks are held to
it; nothing here is imported by the product."""

from __future__ import annotations


def _batch_norm(layout: dict, prefix: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        layout[f"{prefix}.{name}"] = (channels,)
    layout[f"{prefix}.num_batches_tracked"] = ()


def generator_layout(ngf: int = 64, num_downs: int = 8, channels: int = 3) -> dict[str, tuple[int, ...]]:
    """unet_<2**num_downs>, batch norm (so only the outermost up-conv has a bias)."""
    # (outer, inner) channels from the outermost level inwards
    levels = [(channels, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
    levels += [(ngf * 8, ngf * 8)] * (num_downs - 4)
    layout: dict[str, tuple[int, ...]] = {}
    prefix = "model.model"                      # UnetGenerator.model -> the outermost block's Sequential
    for depth, (outer, inner) in enumerate(levels):
        if depth == 0:                          # [downconv, submodule, ReLU, upconv(bias), Tanh]
            layout[f"{prefix}.0.weight"] = (inner, channels, 4, 4)
            layout[f"{prefix}.3.weight"] = (inner * 2, outer, 4, 4)
            layout[f"{prefix}.3.bias"] = (outer,)
            prefix = f"{prefix}.1.model"
        elif depth < len(levels) - 1:           # [LReLU, downconv, BN, submodule, ReLU, upconv, BN(, Dropout)]
            layout[f"{prefix}.1.weight"] = (inner, outer, 4, 4)
            _batch_norm(layout, f"{prefix}.2", inner)
            layout[f"{prefix}.5.weight"] = (inner * 2, outer, 4, 4)
            _batch_norm(layout, f"{prefix}.6", outer)
            prefix = f"{prefix}.3.model"
        else:                                   # innermost: [LReLU, downconv, ReLU, upconv, BN]
            layout[f"{prefix}.1.weight"] = (inner, outer, 4, 4)
            layout[f"{prefix}.3.weight"] = (inner, outer, 4, 4)
            _batch_norm(layout, f"{prefix}.4", outer)
    return layout


def discriminator_layout(ndf: int = 64, n_layers: int = 3, input_nc: int = 6) -> dict[str, tuple[int, ...]]:
    """The 70x70 PatchGAN: conv(bias) + LReLU, then n_layers x [conv, BN, LReLU], then conv(bias)."""
    layout: dict[str, tuple[int, ...]] = {"model.0.weight": (ndf, input_nc, 4, 4), "model.0.bias": (ndf,)}
    index, previous = 2, ndf
    for n in range(1, n_layers + 1):
        width = ndf * min(2 ** n, 8)
        layout[f"model.{index}.weight"] = (width, previous, 4, 4)
        _batch_norm(layout, f"model.{index + 1}", width)
        index, previous = index + 3, width
    layout[f"model.{index}.weight"] = (1, previous, 4, 4)
    layout[f"model.{index}.bias"] = (1,)
    return layout
