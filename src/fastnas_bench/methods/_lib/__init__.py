"""Helpers of the pruning methods that are not methods themselves (never discovered as one)."""
