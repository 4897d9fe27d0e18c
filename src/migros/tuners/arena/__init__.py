"""ARENA (regularised LoRA with adaptive ranks): LoRA as B·diag(v)·A with an l1 penalty on the gates v, minimised
by a proximal (soft-threshold) step after each optimizer step, so ranks shrink to what the task needs; exported
as a standard PEFT LoRA with per-layer ranks."""

from .config import ArenaConfig
from .layer import ArenaLinear, soft_threshold
from .model import ArenaModel

__all__ = ["ArenaConfig", "ArenaLinear", "ArenaModel", "soft_threshold"]
