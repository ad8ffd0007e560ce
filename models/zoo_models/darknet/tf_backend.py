"""TensorFlow/Keras backend: a ``DarknetGraph`` (cfg_parser) -> ``keras.Model`` (NHWC).

The twin of ``models/zoo_models/darknet/torch_backend.py``: same graph, same layer semantics, so the two
builds compute the same function given the same Darknet ``.weights`` (the differential test in
``models/zoo_models/darknet/tf_differential.py`` holds them to 1e-4). Layer semantics follow the darknet C
implementations: pjreddie/darknet (YOLOv3, arXiv:1804.02767; public domain / YOLO licence) and
AlexeyAB/darknet (YOLOv4, arXiv:2004.10934; YOLO licence): ``convolutional_layer.c``,
``route_layer.c``, ``shortcut_layer.c``, ``maxpool_layer.c``, ``upsample_layer.c``. Re-implemented.

Padding is explicit (``tf.pad`` then a VALID op), never Keras ``padding="same"``: TF's SAME pads
asymmetrically (more on the bottom/right) for even kernels and strides, darknet does not.

TensorFlow is imported lazily, through the process-wide gateway replicate/tf_import.py.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from replicate.errors import ConfigError
from replicate.tf_import import tensorflow
from zoo_models.darknet.cfg_parser import (
    DARKNET_BN_EPS,
    DARKNET_BN_MOMENTUM,
    DarknetGraph,
    Layer,
    conv_padding,
    maxpool_geometry,
)


def activation(tf: Any, name: str, x: Any) -> Any:
    """Darknet activation by name (activations.c); leaky uses slope 0.1 as darknet does."""
    if name == "linear":
        return x
    if name == "leaky":
        return tf.nn.leaky_relu(x, alpha=0.1)
    if name == "mish":
        return x * tf.tanh(tf.nn.softplus(x))
    table = {"logistic": tf.sigmoid, "relu": tf.nn.relu, "swish": tf.nn.silu, "tanh": tf.tanh}
    return table[name](x)


@lru_cache(maxsize=None)
def _batch_norm_class(tf: Any) -> type:
    """Keras batch norm with darknet's / torch's training-mode statistics update."""

    class DarknetBatchNorm(tf.keras.layers.BatchNormalization):
        """Batch norm whose training-mode moving variance takes the *unbiased* batch variance.

        Keras updates it with the biased one (sum / n); torch's BatchNorm2d and darknet (blas.c
        variance_cpu: sum / (batch * spatial - 1)) use sum / (n - 1). Left as Keras does it, a
        TF-trained model's rolling statistics drift from the torch build's (measured for n = 4:
        1.25 vs 1.667). The batch itself is normalised with the biased variance, as in both.
        """

        def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
            if not (training and self.trainable):
                return super().call(inputs, training=training, mask=mask)
            x = tf.cast(inputs, "float32")  # statistics in float32 under mixed precision, as Keras
            mean, variance = tf.nn.moments(x, axes=self._reduction_axes)
            count = tf.cast(tf.size(x), "float32") / tf.cast(tf.shape(x)[self.axis], "float32")
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            keep = self.momentum  # Keras' momentum weighs the old value
            old_mean, old_var = tf.cast(self.moving_mean, "float32"), tf.cast(self.moving_variance, "float32")
            self.moving_mean.assign(old_mean * keep + mean * (1.0 - keep))
            self.moving_variance.assign(old_var * keep + unbiased * (1.0 - keep))
            # gamma/beta are autocast to the compute dtype under mixed precision: back to float32
            out = tf.nn.batch_normalization(x, mean, variance, tf.cast(self.beta, "float32"),
                                            tf.cast(self.gamma, "float32"), self.epsilon)
            return tf.cast(out, self.compute_dtype)

    return DarknetBatchNorm


@lru_cache(maxsize=None)
def _conv_block_class(tf: Any) -> type:
    """The Keras [convolutional] layer class (defined once TensorFlow is imported)."""
    keras = tf.keras

    class ConvBlock(tf.keras.layers.Layer):
        """[convolutional]: explicit symmetric pad, VALID conv, optional batch norm, activation."""

        def __init__(self, layer: Layer, in_channels: int, bn_momentum: float, **kwargs: Any):
            super().__init__(name=f"layer{layer.index}_conv", **kwargs)
            opts = layer.options
            size, self.batch_norm = opts.get("size", 1), bool(opts.get("batch_normalize", 0))
            self.pad = conv_padding(opts)
            self.act = opts.get("activation", "logistic")  # darknet's default (parser.c)
            # PyTorch's Conv2d initialisation (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in)) for
            # kernel and bias), not Keras' glorot/zeros: both backends then start from the same
            # distribution and their smoke runs are comparable
            bound = (size * size * in_channels / opts.get("groups", 1)) ** -0.5
            init = keras.initializers.RandomUniform(-bound, bound)
            self.conv = keras.layers.Conv2D(
                opts.get("filters", 1), size, strides=opts.get("stride", 1), padding="valid",
                dilation_rate=opts.get("dilation", 1) if size > 1 else 1, groups=opts.get("groups", 1),
                use_bias=not self.batch_norm, kernel_initializer=init, bias_initializer=init, name="conv")
            self.conv.build((None, None, None, in_channels))
            # Keras momentum weighs the old value: darknet's .99 * old + .01 * new -> 0.99
            self.bn = _batch_norm_class(tf)(axis=-1, momentum=1.0 - bn_momentum, epsilon=DARKNET_BN_EPS,
                                            name="bn") if self.batch_norm else None
            if self.bn is not None:
                self.bn.build((None, None, None, opts.get("filters", 1)))

        def call(self, x: Any, training: bool = False) -> Any:
            if self.pad:
                x = tf.pad(x, [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]])
            x = self.conv(x)
            if self.bn is not None:
                x = self.bn(x, training=training)
            return activation(tf, self.act, x)

    return ConvBlock


@lru_cache(maxsize=None)
def _resample_classes(tf: Any) -> dict[str, type]:
    """The Keras [maxpool] and [upsample] classes (defined once TF is imported)."""

    class MaxPool(tf.keras.layers.Layer):
        """[maxpool] with darknet's padding (default size-1): pad//2 top/left, the rest bottom/right."""

        def __init__(self, layer: Layer, **kwargs: Any):
            super().__init__(name=f"layer{layer.index}_maxpool", **kwargs)
            self.size, self.stride, pad = maxpool_geometry(layer.options)
            self.pads = [[0, 0], [pad // 2, pad - pad // 2], [pad // 2, pad - pad // 2], [0, 0]]
            self.any_pad = pad > 0

        def call(self, x: Any) -> Any:
            if self.any_pad:
                x = tf.pad(x, self.pads, constant_values=float("-inf"))
            return tf.nn.max_pool2d(x, self.size, self.stride, "VALID")

    class Upsample(tf.keras.layers.Layer):
        """[upsample]: nearest neighbour by ``stride``, times ``scale`` (AlexeyAB upsample_layer.c)."""

        def __init__(self, layer: Layer, **kwargs: Any):
            super().__init__(name=f"layer{layer.index}_upsample", **kwargs)
            self.stride, self.scale = layer.get("stride", 2), layer.get("scale", 1.0)

        def call(self, x: Any) -> Any:
            x = tf.repeat(tf.repeat(x, self.stride, axis=1), self.stride, axis=2)
            return x * self.scale if self.scale != 1.0 else x

    return {"maxpool": MaxPool, "upsample": Upsample}


@lru_cache(maxsize=None)
def _merge_classes(tf: Any) -> dict[str, type]:
    """The Keras [route] and [shortcut] classes (defined once TF is imported)."""

    class Route(tf.keras.layers.Layer):
        """[route]: channel concatenation; with groups, the group_id-th channel slice of each."""

        def __init__(self, layer: Layer, **kwargs: Any):
            super().__init__(name=f"layer{layer.index}_route", **kwargs)
            self.groups, self.group_id = layer.get("groups", 1), layer.get("group_id", 0)

        def call(self, xs: list) -> Any:
            if self.groups > 1:
                xs = [tf.split(x, self.groups, axis=-1)[self.group_id] for x in xs]
            return xs[0] if len(xs) == 1 else tf.concat(xs, axis=-1)

    class Shortcut(tf.keras.layers.Layer):
        """[shortcut]: previous output plus the ``from`` layers, then the activation."""

        def __init__(self, layer: Layer, **kwargs: Any):
            super().__init__(name=f"layer{layer.index}_shortcut", **kwargs)
            self.act = layer.get("activation", "linear")

        def call(self, xs: list) -> Any:
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return activation(tf, self.act, out)

    return {"route": Route, "shortcut": Shortcut}


def _layer_classes(tf: Any) -> dict[str, type]:
    """The Keras class of every supported layer type, by section name."""
    return {"convolutional": _conv_block_class(tf), **_resample_classes(tf), **_merge_classes(tf)}


def _make_blocks(classes: dict[str, type], graph: DarknetGraph, bn_momentum: float) -> dict[int, Any]:
    """One Keras layer per darknet layer that has one, by darknet index ([yolo] has none)."""
    blocks: dict[int, Any] = {}
    for layer in graph.layers:
        in_channels = graph.channels if layer.index == 0 else graph.layers[layer.index - 1].out_channels
        if layer.type == "convolutional":
            blocks[layer.index] = classes["convolutional"](layer, in_channels, bn_momentum)
        elif layer.type in classes:
            blocks[layer.index] = classes[layer.type](layer)
        elif layer.type != "yolo":  # [yolo]: decoding lives outside the network
            raise ConfigError(f"darknet layer {layer.index}",
                              f"[{layer.type}] cannot be built as a detection network")
    return blocks


@lru_cache(maxsize=None)
def _model_class(tf: Any) -> type:
    """The Keras model class of a Darknet graph (see build_model)."""
    classes = _layer_classes(tf)

    class TfDarknetModel(tf.keras.Model):
        """The network of a cfg (see build_model)."""

        def __init__(self, graph: DarknetGraph, bn_momentum: float):
            super().__init__(name="darknet")
            self.graph = graph
            by_index = _make_blocks(classes, graph, bn_momentum)
            self.blocks = list(by_index.values())  # a list: Keras tracks its layers' variables
            # darknet index -> position in self.blocks (plain ints: Keras tracks the list only)
            self._position = {index: pos for pos, index in enumerate(by_index)}
            self.yolo_indices = [layer.index for layer in graph.yolo_layers]
            self._keep = {i for layer in graph.layers if layer.type in ("route", "shortcut") for i in layer.inputs}

        def _run(self, x: Any, training: bool, keep_all: bool) -> tuple[list, dict]:
            saved: dict[int, Any] = {}
            heads = []
            for layer in self.graph.layers:
                block: Any = self.blocks[self._position[layer.index]] if layer.index in self._position else None
                if layer.type in ("route", "shortcut"):
                    x = block([x if i == layer.index - 1 else saved[i] for i in layer.inputs])
                elif layer.type == "yolo":
                    heads.append(x)
                elif layer.type == "convolutional":
                    x = block(x, training=training)
                else:
                    x = block(x)
                if keep_all or layer.index in self._keep:
                    saved[layer.index] = x
            return heads, saved

        def call(self, x: Any, training: bool = False) -> list:
            return self._run(x, training, keep_all=False)[0]

        def forward_all(self, x: Any) -> dict[int, Any]:
            """Every layer's output in inference mode, by darknet index."""
            return self._run(x, False, keep_all=True)[1]

        def conv_blocks(self) -> list[tuple[Layer, Any]]:
            """(layer, block) of every [convolutional], in darknet order (the .weights order)."""
            return [(layer, self.blocks[self._position[layer.index]]) for layer in self.graph.layers
                    if layer.type == "convolutional"]

    return TfDarknetModel


def build_model(graph: DarknetGraph, bn_momentum: float = DARKNET_BN_MOMENTUM) -> Any:
    """The Keras model of ``graph`` (built: its variables exist without a forward pass).

    ``model(images_nhwc, training=...)`` returns the raw maps entering each [yolo] layer,
    ``[B, H, W, anchors*(classes+5)]``; ``model.forward_all(images)`` returns every layer's output
    (index -> tensor) for the per-layer differential.
    """
    check_supported(graph)
    return _model_class(tensorflow())(graph, bn_momentum)


def trainable_parameters(model: Any) -> int:
    """Trainable scalars of a Keras model (conv kernels, biases, BN gamma/beta)."""
    return int(sum(int(v.shape.num_elements()) for v in model.trainable_variables))


def check_supported(graph: DarknetGraph) -> None:
    """Fail early on what the Keras build cannot express (none of the official cfgs needs these)."""
    for layer in graph.layers:
        opts = layer.options
        if layer.type == "convolutional" and opts.get("stride", 1) > 1 and opts.get("dilation", 1) > 1 \
                and opts.get("size", 1) > 1:
            raise ConfigError(layer.where(), "[convolutional] stride > 1 with dilation > 1 is not supported "
                                             "by the TensorFlow backend")
