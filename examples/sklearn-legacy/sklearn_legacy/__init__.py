"""Federated scikit-learn LogisticRegression with Flower's legacy NumPyClient API."""
