"""The benchmark's workloads: each module lists its own in ``WORKLOADS`` (bench/core.py)."""
