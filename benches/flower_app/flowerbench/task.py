"""Data and model: multinomial logistic regression on the UCI digits, numpy only.

The same workload as floret's built-in `floret:logreg` ClientApp on
`dataset = "digits"` (src/workload/): 64 pixel features scaled by 1/16, 10
classes; 20% of the rows held out for the central evaluation; the other rows
shuffled and cut into `num_partitions` contiguous IID shards (the first
`rows % num_partitions` one row longer); the last 20% of each shard is its
local test set. Parameters are float32 arrays `[W (10, 64), b (10,)]`,
initialised to zero; training is minibatch SGD on the softmax cross-entropy.
"""

from __future__ import annotations

import functools
import gzip

import numpy as np

NUM_FEATURES = 64
NUM_CLASSES = 10
TEST_FRACTION = 0.2

# Second elements of the seed sequences, one per purpose.
HOLDOUT = 1
PARTITION = 2
TRAIN = 3


@functools.lru_cache(maxsize=4)
def load_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
    """All rows of digits.csv.gz: features (n, 64) float32 in [0, 1], labels (n,)."""
    if not path:
        raise ValueError(
            "run config `data-path` is empty: pass the absolute path of "
            "data/digits/digits.csv.gz with -c 'data-path=\"...\"'"
        )
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != NUM_FEATURES + 1:
        raise ValueError(f"{path}: {table.shape[1]} columns, expected 65")
    features = (table[:, :NUM_FEATURES] / 16.0).astype(np.float32)
    labels = table[:, NUM_FEATURES].astype(np.int64)
    return features, labels


def _tail_split(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The last round(20%) of `rows` (at least one, leaving at least one) is the test side."""
    count = len(rows)
    test = int(np.floor(count * TEST_FRACTION + 0.5))
    test = min(max(test, 1), count - 1) if count >= 2 else 0
    return rows[: count - test], rows[count - test :]


@functools.lru_cache(maxsize=4)
def _split(path: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, held-out rows), each in dataset order."""
    features, _ = load_digits(path)
    order = np.random.default_rng([seed, HOLDOUT]).permutation(len(features))
    pool, held_out = _tail_split(order)
    return np.sort(pool), np.sort(held_out)


def central_test_set(path: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out 20% for the ServerApp's evaluation."""
    features, labels = load_digits(path)
    _, held_out = _split(path, seed)
    return features[held_out], labels[held_out]


def load_partition(
    path: str, seed: int, partition_id: int, num_partitions: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A partition's ((train x, train y), (test x, test y))."""
    features, labels = load_digits(path)
    pool, _ = _split(path, seed)
    if not 0 <= partition_id < num_partitions <= len(pool) // 2:
        raise ValueError(f"partition {partition_id} of {num_partitions} does not exist")
    shuffled = pool[np.random.default_rng([seed, PARTITION]).permutation(len(pool))]
    shard = np.array_split(shuffled, num_partitions)[partition_id]
    train, test = _tail_split(shard)
    return (features[train], labels[train]), (features[test], labels[test])


def initial_parameters() -> list[np.ndarray]:
    return [
        np.zeros((NUM_CLASSES, NUM_FEATURES), dtype=np.float32),
        np.zeros(NUM_CLASSES, dtype=np.float32),
    ]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def train(
    parameters: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], float]:
    """Minibatch SGD; returns the new parameters and the mean loss of the last
    epoch (each example measured before its batch's step)."""
    weights = parameters[0].astype(np.float32, copy=True)
    bias = parameters[1].astype(np.float32, copy=True)
    step = np.float32(lr)
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        loss = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            xb, yb = x[rows], y[rows]
            log_p = _log_softmax(xb @ weights.T + bias)
            loss -= float(log_p[np.arange(len(rows)), yb].sum(dtype=np.float64))
            delta = np.exp(log_p)
            delta[np.arange(len(rows)), yb] -= 1.0
            scale = step / np.float32(len(rows))
            weights -= scale * (delta.T @ xb)
            bias -= scale * delta.sum(axis=0)
        loss /= len(x)
    return [weights, bias], loss


def evaluate(parameters: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy)."""
    weights = parameters[0].astype(np.float32, copy=False)
    bias = parameters[1].astype(np.float32, copy=False)
    log_p = _log_softmax(x @ weights.T + bias)
    loss = -float(log_p[np.arange(len(y)), y].mean(dtype=np.float64))
    accuracy = float((log_p.argmax(axis=1) == y).mean())
    return loss, accuracy
