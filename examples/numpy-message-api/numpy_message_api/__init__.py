"""Federated logistic regression in pure NumPy with Flower's Message API."""
