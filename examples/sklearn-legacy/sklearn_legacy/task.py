"""The model and the data: scikit-learn and NumPy, no Flower.

The data is scikit-learn's bundled copy of the UCI handwritten digits (1797
images of 8x8 pixels, 10 classes), so nothing is downloaded. A fifth of it,
chosen with the run config's `seed`, is held out for the ServerApp's central
evaluation; the rest is dealt out to the partitions.
"""

import warnings
from functools import cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss

NUM_CLASSES = 10
NUM_FEATURES = 64


@cache
def _all_digits():
    """All 1797 digits once per process: pixels scaled from 0..16 to 0..1, labels."""
    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def _digits(indices):
    x, y = _all_digits()
    return x[indices], y[indices]


def _split(seed: int):
    """(indices of the pool the partitions share, indices of the central test set)."""
    order = np.random.default_rng(seed).permutation(len(_all_digits()[1]))
    cut = len(order) * 4 // 5
    return order[:cut], order[cut:]


def load_partition(seed: int, partition_id: int, num_partitions: int):
    """This partition's (train, test) split.

    The shared pool is sorted by label, then dealt out round-robin, so every
    partition holds every digit (stratified, deterministic).
    """
    pool, _ = _split(seed)
    _, labels = _digits(pool)
    pool = pool[np.argsort(labels, kind="stable")]
    x, y = _digits(pool[partition_id::num_partitions])
    # Shuffle deterministically before cutting, so both splits hold every digit.
    order = np.random.default_rng([seed, partition_id]).permutation(len(y))
    x, y = x[order], y[order]
    cut = len(y) * 4 // 5
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def load_central_testset(seed: int):
    _, central = _split(seed)
    return _digits(central)


def create_model(local_epochs: int) -> LogisticRegression:
    """Multinomial logistic regression, `local_epochs` L-BFGS iterations per fit.

    `warm_start` makes `fit` continue from the parameters the server sent.
    """
    return LogisticRegression(max_iter=local_epochs, warm_start=True)


def get_parameters(model: LogisticRegression):
    return [model.coef_, model.intercept_]


def set_parameters(model: LogisticRegression, parameters) -> None:
    model.coef_, model.intercept_ = parameters
    model.classes_ = np.arange(NUM_CLASSES)


def initial_parameters():
    """All-zero coefficients: every class equally likely, loss ln 10."""
    return [np.zeros((NUM_CLASSES, NUM_FEATURES)), np.zeros(NUM_CLASSES)]


def fit(model: LogisticRegression, x, y) -> None:
    with warnings.catch_warnings():
        # A few iterations per round never converge; that is the point.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)


def evaluate(model: LogisticRegression, x, y):
    """(log-loss, accuracy) of the model on (x, y)."""
    probabilities = model.predict_proba(x)
    loss = log_loss(y, probabilities, labels=np.arange(NUM_CLASSES))
    return float(loss), float(accuracy_score(y, model.predict(x)))
