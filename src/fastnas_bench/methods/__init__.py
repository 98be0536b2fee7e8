"""Pruning methods, one module each (see :mod:`fastnas_bench.methods.registry`); the interface in ``base``."""
