"""Benchmarks: `python -m bench` runs every module's `main()` and prints comparable figures."""
