"""Vanilla LoRA through peft, kind `lora`."""

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from migros.adapters.base import SUBMODELS, save_peft_state, submodels
from migros.tuners.lowrank import linear_module_names


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float


class PeftLoraAdapter:
    """Vanilla LoRA at a fixed rank, through peft (scale lora_alpha / rank)."""

    Settings = LoraSettings
    INITIAL_RANK_KEY = "rank"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: LoraSettings, seed: int, total_steps: int):
        rank, alpha = settings.rank, settings.alpha
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

    def regularisation(self) -> float:
        return 0.0

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
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
        states = self.state_dict()
        save_peft_state(folder, {name: (self.configs[name], states[name]) for name in SUBMODELS})
