"""The adapter interface of the training loop, and its two implementations: peft LoRA and SeLoRA.

Adapted modules: every nn.Linear of the UNet and of the text encoder (`linear_module_names`), named explicitly,
so a layer is never skipped because its name matches no pattern; the VAE stays frozen.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from migros.tuners.selora import SeLoraConfig, SeLoraModel, linear_module_names

SUBMODELS = ("unet", "text_encoder")


class Adapter(Protocol):
    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def after_optimizer_step(self, step: int, compute_loss: Callable[[], torch.Tensor], optimizer) -> dict[str, int]:
        """Called after optimizer step `step` (1-based); returns {layer: new rank} of layers that grew."""

    def ranks(self) -> dict[str, int]: ...

    def rank_history(self) -> list[tuple[int, str, int]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def save_lora(self, folder: Path) -> None:
        """Write the adapter as diffusers LoRA weights (`pytorch_lora_weights.safetensors`)."""


def submodels(pipeline: StableDiffusionPipeline) -> dict[str, nn.Module]:
    return {name: getattr(pipeline, name) for name in SUBMODELS}


def save_peft_state(folder: Path, states: dict[str, dict[str, torch.Tensor]], configs: dict[str, LoraConfig]) -> None:
    """Save unconverted PEFT state dicts: converting them to the legacy diffusers format loses layers of
    adapters with per-layer ranks (DESIGN.md, checked on these versions)."""
    StableDiffusionPipeline.save_lora_weights(
        folder,
        unet_lora_layers=states["unet"],
        text_encoder_lora_layers=states["text_encoder"],
        unet_lora_adapter_metadata=configs["unet"].to_dict(),
        text_encoder_lora_adapter_metadata=configs["text_encoder"].to_dict(),
        safe_serialization=True,
    )


class PeftLoraAdapter:
    """Vanilla LoRA at a fixed rank, through peft (scale lora_alpha / rank)."""

    def __init__(self, pipeline: StableDiffusionPipeline, rank: int, alpha: float, seed: int):
        self.models = submodels(pipeline)
        self.configs = {}
        # peft shortens a long target_modules list to name suffixes, so the layer names are kept here.
        layers = {name: linear_module_names(model) for name, model in self.models.items()}
        torch.manual_seed(seed)  # peft draws the A init from the global generator
        for name, model in self.models.items():
            model.requires_grad_(False)
            self.configs[name] = LoraConfig(r=rank, lora_alpha=alpha, target_modules=layers[name], init_lora_weights=True)
            model.add_adapter(self.configs[name])
        self._history = [(0, f"{name}.{layer}", rank) for name in self.models for layer in layers[name]]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for model in self.models.values() for p in model.parameters() if p.requires_grad]

    def after_optimizer_step(self, step, compute_loss, optimizer) -> dict[str, int]:
        return {}

    def ranks(self) -> dict[str, int]:
        return {layer: rank for _, layer, rank in self._history}

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self._history)

    def state_dict(self) -> dict:
        return {name: get_peft_model_state_dict(model) for name, model in self.models.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, model in self.models.items():
            set_peft_model_state_dict(model, state[name])

    def save_lora(self, folder: Path) -> None:
        save_peft_state(folder, self.state_dict(), self.configs)


class SeLoraAdapter:
    """Self-Expanding LoRA (migros.tuners.selora), exported with per-layer ranks."""

    def __init__(self, pipeline: StableDiffusionPipeline, threshold: float, expand_every: int, max_rank: int | None,
                 alpha: float, seed: int, init_rank: int = 1):
        models = submodels(pipeline)
        targets = [f"{name}.{layer}" for name, model in models.items() for layer in linear_module_names(model)]
        config = SeLoraConfig(
            target_modules=targets, expand_every=expand_every, init_rank=init_rank, max_rank=max_rank,
            expansion_threshold=threshold, lora_alpha=alpha, init_seed=seed,
        )
        self.selora = SeLoraModel(models, config)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.selora.trainable_parameters()

    def after_optimizer_step(self, step, compute_loss, optimizer) -> dict[str, int]:
        return self.selora.maybe_expand(step, compute_loss, optimizer)

    def ranks(self) -> dict[str, int]:
        return self.selora.ranks()

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self.selora.rank_history)

    def state_dict(self) -> dict:
        return self.selora.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.selora.load_state_dict(state)

    def save_lora(self, folder: Path) -> None:
        exported = {name: self.selora.to_peft(name) for name in SUBMODELS}
        save_peft_state(folder, {n: state for n, (_, state) in exported.items()}, {n: cfg for n, (cfg, _) in exported.items()})


ADAPTERS = {"lora": PeftLoraAdapter, "selora": SeLoraAdapter}


def build_adapter(pipeline: StableDiffusionPipeline, method: dict, seed: int) -> Adapter:
    """`method` is one entry of config `methods`, e.g. {kind: selora, threshold: 1.04, expand_every: 25, ...}."""
    settings = {key: value for key, value in method.items() if key != "kind"}
    if method["kind"] not in ADAPTERS:
        raise ValueError(f"unknown method kind {method['kind']!r}; known: {sorted(ADAPTERS)}")
    return ADAPTERS[method["kind"]](pipeline, seed=seed, **settings)
