"""Fine-tuning methods, chosen in config by `kind`. Each adapts the UNet and the text encoder of a Stable
Diffusion pipeline and exports a standard PEFT LoRA that a stock diffusers pipeline loads with
`load_lora_weights`."""

from migros.methods.adapters import ADAPTERS, Adapter, build_adapter

__all__ = ["ADAPTERS", "Adapter", "build_adapter"]
