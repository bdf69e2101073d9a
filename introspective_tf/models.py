"""Backbone classifiers. Every model takes float pixels in [0, 255] and returns logits.

Built with the functional API from stock Keras layers only, so a saved `.keras` file loads anywhere
without custom objects, and tools such as Grad-CAM can find layers by name. The last convolutional
block of every model is named `last_conv_block`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import keras
from keras import layers

from introspective_tf.errors import ConfigError


def _preprocess(inputs):
    """Pixels [0, 255] -> [-1, 1], inside the model so the exported model needs no preprocessing."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)


def _batch_norm(name):
    """momentum 0.9 (PyTorch's 0.1): the moving statistics follow the weights within ~10 steps, which
    matters here because inference-mode self-explanations (input gradients by default, see
    `--explanation_mode`) use them during training."""
    return layers.BatchNormalization(momentum=0.9, name=name)


def _l2(weight_decay):
    """Coupled weight decay as in most CIFAR papers: gradient += weight_decay * w, i.e. L2(wd / 2)."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _conv(filters, kernel, stride, weight_decay, name):
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=_l2(weight_decay),
        name=name,
    )


def _residual_block(x, filters, stride, weight_decay, name):
    shortcut = x
    y = _conv(filters, 3, stride, weight_decay, f"{name}_conv1")(x)
    y = _batch_norm(f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, weight_decay, f"{name}_conv2")(y)
    y = _batch_norm(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:  # option B: 1x1 projection shortcut
        shortcut = _conv(filters, 1, stride, weight_decay, f"{name}_proj")(x)
        shortcut = _batch_norm(f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out" if name != "last_conv_block" else name)(y)


def _pooled_logits(inputs, features, num_classes: int, weight_decay: float, name: str) -> keras.Model:
    """Global average pooling of `features` (the `last_conv_block` output) and one linear layer, so that
    Grad-CAM at `last_conv_block` equals CAM."""
    x = layers.GlobalAveragePooling2D(name="pool")(features)
    logits = layers.Dense(num_classes, kernel_regularizer=_l2(weight_decay), name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def cifar_resnet(
    depth: int,
    input_shape=(32, 32, 3),
    num_classes: int = 10,
    weight_decay: float = 0.0,
    stem_filters: int = 16,
    widths: tuple[int, int, int] = (16, 32, 64),
    name: str = "",
) -> keras.Model:
    """CIFAR ResNet of He et al. (2016): depth = 6n + 2, stages of 16/32/64 filters (RepDistiller's x4
    variants: a 32-filter stem and 64/128/256), 1x1 projection shortcuts where the shape changes."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, not {depth}")
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="images")
    x = _conv(stem_filters, 3, 1, weight_decay, "stem_conv")(_preprocess(inputs))
    x = layers.ReLU(name="stem_relu")(_batch_norm("stem_bn")(x))
    for stage, filters in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            last = stage == 2 and block == blocks_per_stage - 1
            x = _residual_block(
                x, filters, stride, weight_decay, "last_conv_block" if last else f"stage{stage + 1}_block{block + 1}"
            )
    return _pooled_logits(inputs, x, num_classes, weight_decay, name or f"resnet{depth}")


def small_cnn(input_shape=(32, 32, 3), num_classes: int = 10, weight_decay: float = 0.0) -> keras.Model:
    """A two-block CNN with BatchNorm: seconds per epoch on a CPU, for tests and sweeps."""
    inputs = keras.Input(input_shape, name="images")
    x = _preprocess(inputs)
    for i, filters in enumerate((32, 64)):
        x = _conv(filters, 3, 1, weight_decay, f"conv{i + 1}")(x)
        x = _batch_norm(f"bn{i + 1}")(x)
        x = layers.ReLU(name="last_conv_block" if i == 1 else f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(num_classes, kernel_regularizer=_l2(weight_decay), name="logits")(x)
    return keras.Model(inputs, logits, name="small_cnn")


# The CIFAR backbones of the knowledge-distillation literature, as in RepDistiller, the code of Tian et
# al., "Contrastive Representation Distillation" (ICLR 2020), which most KD papers reuse.


def _wide_block(x, filters, stride, weight_decay, name):
    """Pre-activation basic block (BN-ReLU-conv twice); where the shape changes, the shortcut is a 1x1
    convolution of the activated input."""
    activated = layers.ReLU(name=f"{name}_relu1")(_batch_norm(f"{name}_bn1")(x))
    y = _conv(filters, 3, stride, weight_decay, f"{name}_conv1")(activated)
    y = layers.ReLU(name=f"{name}_relu2")(_batch_norm(f"{name}_bn2")(y))
    y = _conv(filters, 3, 1, weight_decay, f"{name}_conv2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv(filters, 1, stride, weight_decay, f"{name}_proj")(activated)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def wide_resnet(
    depth: int, widen_factor: int, input_shape=(32, 32, 3), num_classes: int = 10, weight_decay: float = 0.0
) -> keras.Model:
    """Wide ResNet WRN-depth-k of Zagoruyko & Komodakis (BMVC 2016): depth = 6n + 4, pre-activation
    stages of 16k/32k/64k filters, no dropout."""
    if (depth - 4) % 6:
        raise ValueError(f"Wide ResNet depth must be 6n + 4, not {depth}")
    blocks_per_stage = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="images")
    x = _conv(16, 3, 1, weight_decay, "stem_conv")(_preprocess(inputs))
    for stage, filters in enumerate((16 * widen_factor, 32 * widen_factor, 64 * widen_factor)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _wide_block(x, filters, stride, weight_decay, f"stage{stage + 1}_block{block + 1}")
    x = layers.ReLU(name="last_conv_block")(_batch_norm("final_bn")(x))
    return _pooled_logits(inputs, x, num_classes, weight_decay, f"wrn{depth}_{widen_factor}")


VGG_BLOCKS = {8: (64, 128, 256, 512, 512), 13: (64, 64, 128, 128, 256, 256, 512, 512, 512, 512)}


def cifar_vgg(depth: int, input_shape=(32, 32, 3), num_classes: int = 10, weight_decay: float = 0.0) -> keras.Model:
    """VGG with BatchNorm (Simonyan & Zisserman, ICLR 2015) as RepDistiller has it for CIFAR: five blocks of
    one (VGG-8) or two (VGG-13) 3x3 conv-BN-ReLU, 2x2 max-pooling after the first three, global average
    pooling and one linear layer. The convolutions have no bias (BatchNorm's offset replaces it)."""
    widths = VGG_BLOCKS[depth]
    per_block = len(widths) // 5
    inputs = keras.Input(input_shape, name="images")
    x = _preprocess(inputs)
    for i, filters in enumerate(widths):
        block, conv = i // per_block + 1, i % per_block + 1
        x = _conv(filters, 3, 1, weight_decay, f"block{block}_conv{conv}")(x)
        x = _batch_norm(f"block{block}_bn{conv}")(x)
        x = layers.ReLU(name="last_conv_block" if i == len(widths) - 1 else f"block{block}_relu{conv}")(x)
        if conv == per_block and block <= 3:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return _pooled_logits(inputs, x, num_classes, weight_decay, f"vgg{depth}")


def _inverted_residual(x, filters, stride, expansion, weight_decay, name):
    """MobileNetV2 block: 1x1 expansion (kept at expansion 1, as in RepDistiller), 3x3 depthwise, linear 1x1
    projection; an identity shortcut where the shape is kept."""
    y = _conv(x.shape[-1] * expansion, 1, 1, weight_decay, f"{name}_expand")(x)
    y = layers.ReLU(name=f"{name}_expand_relu")(_batch_norm(f"{name}_expand_bn")(y))
    y = layers.DepthwiseConv2D(
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_regularizer=_l2(weight_decay),
        # He initialisation for the depthwise kernel's true fan-in of 9 (shape (3, 3, C, 1): fan_out = 9).
        depthwise_initializer=keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal"),
        name=f"{name}_depthwise",
    )(y)
    y = layers.ReLU(name=f"{name}_depthwise_relu")(_batch_norm(f"{name}_depthwise_bn")(y))
    y = _batch_norm(f"{name}_project_bn")(_conv(filters, 1, 1, weight_decay, f"{name}_project")(y))
    if stride == 1 and x.shape[-1] == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


# (expansion t, channels c, blocks n, first stride s) of Sandler et al. (2018), Table 2.
MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenetv2(
    input_shape=(32, 32, 3), num_classes: int = 10, weight_decay: float = 0.0, width_multiplier: float = 0.5
) -> keras.Model:
    """MobileNetV2 (Sandler et al., CVPR 2018) as RepDistiller's CIFAR `mobile_half`: width 0.5, a stride-2
    stem, ReLU, and a 1x1 convolution to 1280 channels before the pooling."""
    inputs = keras.Input(input_shape, name="images")
    x = _conv(int(32 * width_multiplier), 3, 2, weight_decay, "stem_conv")(_preprocess(inputs))
    x = layers.ReLU(name="stem_relu")(_batch_norm("stem_bn")(x))
    for stage, (expansion, channels, blocks, first_stride) in enumerate(MOBILENETV2_STAGES):
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            x = _inverted_residual(
                x,
                int(channels * width_multiplier),
                stride,
                expansion,
                weight_decay,
                f"stage{stage + 1}_block{block + 1}",
            )
    head_width = int(1280 * width_multiplier) if width_multiplier > 1.0 else 1280
    x = _batch_norm("head_bn")(_conv(head_width, 1, 1, weight_decay, "head_conv")(x))
    x = layers.ReLU(name="last_conv_block")(x)
    return _pooled_logits(inputs, x, num_classes, weight_decay, "mobilenetv2")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "small_cnn": small_cnn,
    **{f"resnet{d}": partial(cifar_resnet, d) for d in (8, 14, 20, 32, 56, 110)},
    **{
        f"resnet{d}x4": partial(cifar_resnet, d, stem_filters=32, widths=(64, 128, 256), name=f"resnet{d}x4")
        for d in (8, 32)
    },
    "wrn16_2": partial(wide_resnet, 16, 2),
    "wrn40_2": partial(wide_resnet, 40, 2),
    "wrn28_10": partial(wide_resnet, 28, 10),
    "vgg8": partial(cifar_vgg, 8),
    "vgg13": partial(cifar_vgg, 13),
    "mobilenetv2": mobilenetv2,
}


def build(name: str, input_shape, num_classes: int, weight_decay: float = 0.0) -> keras.Model:
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}': use one of {', '.join(MODELS)}")
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, weight_decay=weight_decay)
