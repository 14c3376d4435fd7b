"""attnscope benchmarks (scripts, not tests): `python benchmarks/run.py` or `attnscope bench`."""
