"""A small convolutional classifier for 8x8 digits and 28x28 Fashion-MNIST-sized images.

No BatchNorm: its running statistics cannot be batched over parties (see
:mod:`deai.models.torch_adapter`), and padding rows would leak into per-batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from deai.models.torch_adapter import TorchModel

# A 4x4 pooled map keeps coarse "where" information (which quadrant, which stroke) that a
# global average would throw away, while the head stays small (32 * 16 inputs).
_POOLED_SIZE = 4


def small_cnn(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> torch.nn.Module:
    """conv3x3(16) -> ReLU -> maxpool2 -> conv3x3(32) -> ReLU -> adaptive avg pool 4x4 -> linear.

    About 10k parameters for one input channel and 10 classes; works for any image of at
    least 2x2 pixels. ``input_shape`` is ``(channels, height, width)``.
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape}")
    channels, height, width = (int(s) for s in input_shape)
    if channels < 1 or height < 2 or width < 2:
        raise ValueError(f"input_shape needs >= 1 channel and >= 2x2 pixels, got {input_shape}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return nn.Sequential(
        nn.Conv2d(channels, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(_POOLED_SIZE),
        nn.Flatten(),
        nn.Linear(32 * _POOLED_SIZE * _POOLED_SIZE, int(num_classes)),
    )


def cnn_model(input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10) -> TorchModel:
    """:func:`small_cnn` wrapped as a batched deai model."""
    return TorchModel(small_cnn(input_shape, num_classes), num_classes, input_shape)
