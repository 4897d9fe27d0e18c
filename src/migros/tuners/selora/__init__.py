"""Self-Expanding LoRA (SeLoRA, Mao et al. 2024): LoRA whose per-layer rank grows during training by Fisher trials,
exported as a standard PEFT LoRA with per-layer ranks."""

from .config import SeLoraConfig
from .layer import SeLoraLinear
from .model import SeLoraModel

__all__ = ["SeLoraConfig", "SeLoraLinear", "SeLoraModel"]
