"""Fine-tuning methods, chosen in config by `kind`. Each adapts the UNet and the text encoder of a Stable
Diffusion pipeline and exports a standard PEFT LoRA that a stock diffusers pipeline loads with
`load_lora_weights`."""

from migros.methods.adapters import (
    ADAPTERS, TRAINING_OVERRIDES, Adapter, MethodConfigError, build_adapter, method_settings, training_overrides,
)

__all__ = [
    "ADAPTERS", "TRAINING_OVERRIDES", "Adapter", "MethodConfigError", "build_adapter", "method_settings",
    "training_overrides",
]
