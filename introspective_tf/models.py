"""Backbone classifiers. Every model takes float pixels in [0, 255] and returns logits.

Built with the functional API from stock Keras layers only, so a saved `.keras` file loads anywhere
without custom objects, and tools such as Grad-CAM can find layers by name. The last convolutional
block of every model is named `last_conv_block`.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from introspective_tf.errors import ConfigError


def _preprocess(inputs):
    """Pixels [0, 255] -> [-1, 1], inside the model so the exported model needs no preprocessing."""
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)


def _batch_norm(name):
    """momentum 0.9 (PyTorch's 0.1): the moving statistics follow the weights within ~10 steps, which
    matters here because the self-explanations are computed in inference mode during training."""
    return layers.BatchNormalization(momentum=0.9, name=name)


def _l2(weight_decay):
    """Coupled weight decay as in most CIFAR papers: gradient += weight_decay * w, i.e. L2(wd / 2)."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _conv(filters, kernel, stride, weight_decay, name):
    return layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False, kernel_initializer="he_normal",
        kernel_regularizer=_l2(weight_decay), name=name,
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


def cifar_resnet(
    depth: int, input_shape=(32, 32, 3), num_classes: int = 10, weight_decay: float = 0.0
) -> keras.Model:
    """CIFAR ResNet of He et al. (2016): depth = 6n + 2, stages of 16/32/64 filters."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, not {depth}")
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="images")
    x = _conv(16, 3, 1, weight_decay, "stem_conv")(_preprocess(inputs))
    x = layers.ReLU(name="stem_relu")(_batch_norm("stem_bn")(x))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            last = stage == 2 and block == blocks_per_stage - 1
            x = _residual_block(x, filters, stride, weight_decay, "last_conv_block" if last else f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(num_classes, kernel_regularizer=_l2(weight_decay), name="logits")(x)
    return keras.Model(inputs, logits, name=f"resnet{depth}")


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


MODELS: dict[str, Callable[..., keras.Model]] = {
    "small_cnn": small_cnn,
    **{f"resnet{d}": (lambda d: lambda **kw: cifar_resnet(d, **kw))(d) for d in (8, 14, 20, 32, 56, 110)},
}


def build(name: str, input_shape, num_classes: int, weight_decay: float = 0.0) -> keras.Model:
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}': use one of {', '.join(MODELS)}")
    return MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, weight_decay=weight_decay)
