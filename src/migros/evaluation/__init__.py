"""Evaluation of the synthetic images: post-processing, memorisation check and the downstream metrics."""

WEIGHTS_RECORD = "weights.json"  # written beside the Inception weights: which file (and SHA-256) FID used
