"""The measured latency frontier of a search space: sampled width configurations timed against the full network."""
