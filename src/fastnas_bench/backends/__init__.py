"""Inference backends, one module each (see :mod:`fastnas_bench.backends.registry`); the interface in ``base``."""
