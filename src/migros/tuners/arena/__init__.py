"""ARENA (regularised LoRA with adaptive ranks): LoRA as B·diag(v)·A with an l1 penalty on the gates v, minimised
by the paper's proximal gradient step on v beside the optimizer's steps on A and B, so ranks settle at what the
task needs; exported as a standard PEFT LoRA with per-layer ranks."""

from .config import ArenaConfig
from .layer import ArenaLinear
from .model import ArenaModel
from .optimizer import ProximalGradientDescent, soft_threshold

__all__ = ["ArenaConfig", "ArenaLinear", "ArenaModel", "ProximalGradientDescent", "soft_threshold"]
