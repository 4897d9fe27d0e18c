"""The one rule for where torch work runs: CUDA when present, the CPU otherwise."""

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
