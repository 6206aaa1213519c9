"""The model, the data and the training loop: plain NumPy, no Flower.

Every random number comes from a generator seeded by the run config's `seed`,
so a run is reproducible: the same config gives the same data, the same
training and the same metrics.
"""

import numpy as np

# Independent random streams, all derived from the run config's `seed`.
_TRUE_MODEL, _PARTITION, _CENTRAL = 0, 1, 2


def rng(seed: int, *stream: int) -> np.random.Generator:
    """A generator for one named stream of the run's seed."""
    return np.random.default_rng([seed, *stream])


def _make_data(gen: np.random.Generator, true_w, n: int, shift):
    """`n` samples whose labels follow the true model, plus some label noise."""
    x = gen.normal(loc=shift, size=(n, true_w.size))
    logits = x @ true_w + gen.normal(scale=0.5, size=n)
    y = (logits > 0).astype(np.float64)
    return x, y


def _true_model(seed: int, num_features: int):
    return rng(seed, _TRUE_MODEL).normal(size=num_features)


def load_partition(seed: int, partition_id: int, num_features: int):
    """This partition's (train, test) split.

    Partitions differ in size (80 to 160 samples, so FedAvg's weighting
    matters) and in the mean of their features (non-IID).
    """
    true_w = _true_model(seed, num_features)
    gen = rng(seed, _PARTITION, partition_id)
    n = 80 + 20 * (partition_id % 5)
    shift = gen.normal(scale=0.5, size=num_features)
    x, y = _make_data(gen, true_w, n, shift)
    cut = n * 4 // 5
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def load_central_testset(seed: int, num_features: int):
    """A held-out set the ServerApp evaluates the global model on."""
    true_w = _true_model(seed, num_features)
    return _make_data(rng(seed, _CENTRAL), true_w, 500, 0.0)


def init_model(num_features: int):
    """All-zero weights and bias: the loss starts at ln 2."""
    return np.zeros(num_features), np.zeros(1)


def evaluate(weights, bias, x, y):
    """(mean log-loss, accuracy) of the model on (x, y)."""
    logits = x @ weights + bias[0]
    loss = np.mean(np.logaddexp(0.0, logits) - y * logits)
    accuracy = np.mean((logits > 0) == (y == 1.0))
    return float(loss), float(accuracy)


def train(weights, bias, x, y, lr: float, steps: int):
    """`steps` steps of full-batch gradient descent on the log-loss."""
    for _ in range(steps):
        logits = x @ weights + bias[0]
        error = 0.5 * (1.0 + np.tanh(0.5 * logits)) - y  # sigmoid(logits) - y
        weights = weights - lr * (x.T @ error) / len(y)
        bias = bias - lr * np.mean(error)
    return weights, bias
