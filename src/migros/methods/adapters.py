"""The adapter interface of the training loop, and its two implementations: peft LoRA and SeLoRA.

Adapted modules: every nn.Linear of the UNet and of the text encoder (`linear_module_names`), named explicitly,
so a layer is never skipped because its name matches no pattern; the VAE stays frozen.

A `methods` entry of the config is `kind`, the adapter's own settings (its kind's settings dataclass) and
optionally training overrides (`TRAINING_OVERRIDES`, e.g. the PI-CAI SeLoRA methods' own `epochs`), which are
split off before the adapter is built. The schema checks the keys of each kind when the config is validated and
fills in their defaults; `method_settings` checks them again for callers that build adapters without Snakemake.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from migros.tuners.selora import SeLoraConfig, SeLoraModel, linear_module_names

SUBMODELS = ("unet", "text_encoder")
# Keys of a `methods` entry that override the shared `finetune` settings for that method, not adapter settings.
TRAINING_OVERRIDES = ("epochs",)


class MethodConfigError(ValueError):
    """A `methods` entry whose keys do not fit its kind."""


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float


@dataclass(frozen=True)
class SeLoraSettings:
    threshold: float  # λ: a layer grows when FI(r+1)/FI(r) >= λ
    expand_every: int  # optimizer steps between Fisher trials
    alpha: float
    max_rank: int | None  # None: no cap
    init_rank: int

    def __post_init__(self):
        # the schema bounds each rank, not their order
        if self.max_rank is not None and self.max_rank < self.init_rank:
            raise MethodConfigError(f"a selora method's max_rank ({self.max_rank}) must not be below its init_rank "
                                    f"({self.init_rank})")


class Adapter(Protocol):
    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def after_optimizer_step(
        self, step: int, compute_loss: Callable[[], torch.Tensor], optimizer, stepped: bool = True
    ) -> dict[str, int]:
        """Called after optimizer step `step` (1-based); `stepped` is False when the gradient scaler skipped that
        step (fp16 overflow). Returns {layer: new rank} of layers that grew."""

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

    Settings = LoraSettings

    def __init__(self, pipeline: StableDiffusionPipeline, settings: LoraSettings, seed: int):
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
        save_peft_state(folder, self.state_dict(), self.configs)


class SeLoraAdapter:
    """Self-Expanding LoRA (migros.tuners.selora), exported with per-layer ranks."""

    Settings = SeLoraSettings

    def __init__(self, pipeline: StableDiffusionPipeline, settings: SeLoraSettings, seed: int):
        models = submodels(pipeline)
        targets = [f"{name}.{layer}" for name, model in models.items() for layer in linear_module_names(model)]
        config = SeLoraConfig(
            target_modules=targets, expand_every=settings.expand_every, init_rank=settings.init_rank,
            max_rank=settings.max_rank, expansion_threshold=settings.threshold, lora_alpha=settings.alpha,
            init_seed=seed,
        )
        self.selora = SeLoraModel(models, config)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.selora.trainable_parameters()

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return self.selora.maybe_expand(step, compute_loss, optimizer, stepped)

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


def method_settings(method: dict, name: str = "method") -> LoraSettings | SeLoraSettings:
    """The adapter settings of one `methods` entry (training overrides left out), its keys checked against its
    kind; errors name the method (`name`) and the key."""
    kind = method.get("kind")
    if kind not in ADAPTERS:
        raise MethodConfigError(f"methods.{name}: unknown kind {kind!r}; known kinds: {sorted(ADAPTERS)}")
    settings_class = ADAPTERS[kind].Settings
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    given = {key: value for key, value in method.items() if key != "kind" and key not in TRAINING_OVERRIDES}
    if unknown := sorted(set(given) - set(fields)):
        raise MethodConfigError(
            f"methods.{name}: a {kind} method takes no key {', '.join(map(repr, unknown))}; its keys are "
            f"{sorted(fields)}, plus the training overrides {list(TRAINING_OVERRIDES)}"
        )
    if missing := sorted(set(fields) - set(given)):
        raise MethodConfigError(f"methods.{name}: a {kind} method needs {', '.join(map(repr, missing))} (validating "
                                f"the config fills in the schema's defaults)")
    return settings_class(**given)


def training_overrides(method: dict) -> dict:
    """The `finetune` settings that a `methods` entry overrides for itself, e.g. {"epochs": 150}."""
    return {key: method[key] for key in TRAINING_OVERRIDES if key in method}


def build_adapter(pipeline: StableDiffusionPipeline, method: dict, seed: int, name: str = "method") -> Adapter:
    """`method` is one entry of config `methods`, e.g. {kind: selora, threshold: 1.04, expand_every: 25, ...};
    training overrides in it (such as `epochs`) are for the training loop and are left out here."""
    settings = method_settings(method, name)
    return ADAPTERS[method["kind"]](pipeline, settings, seed=seed)
