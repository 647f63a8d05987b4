"""The Django project that benchmarks/run.py starts workers of."""
