"""floret's quickstart workload as a Python Flower App (for benchmarks)."""
