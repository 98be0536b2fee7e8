"""Helpers of the backends that are not backends themselves (never discovered as one)."""
