"""The adapter interface of the training loop and what its kinds share; each kind (peft LoRA and AdaLoRA, SeLoRA,
ARENA) has its own module, and `migros.adapters` registers them.

Adapted modules: every nn.Linear of the UNet and of the text encoder (`linear_module_names`), named explicitly,
so a layer is never skipped because its name matches no pattern; the VAE stays frozen.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from diffusers import StableDiffusionPipeline
from peft import LoraConfig
from torch import nn

from migros.tuners.arena import ArenaModel
from migros.tuners.lowrank import linear_module_names
from migros.tuners.selora import SeLoraModel

SUBMODELS = ("unet", "text_encoder")
# Keys of a `methods` entry that override the shared `finetune` settings for that method, not adapter settings.
TRAINING_OVERRIDES = ("epochs",)
# Keys of a `methods` entry that configure its training rather than its adapter: the overrides and the optional
# privacy defence (migros.diffusion.privacy_defence).
TRAINING_KEYS = (*TRAINING_OVERRIDES, "privacy")


class MethodConfigError(ValueError):
    """A `methods` entry whose keys do not fit its kind."""


class Adapter(Protocol):
    """Built as `Kind(pipeline, settings, seed, total_steps)`; attaches itself to the pipeline's UNet and text
    encoder. A kind's class names its settings dataclass, whose fields are the kind's config keys (`Settings`),
    and which of them is the rank every layer starts at (`INITIAL_RANK_KEY`)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the training loop's optimizer (Adam) trains."""

    def regularisation(self) -> torch.Tensor | float:
        """A penalty that the training loop adds to the loss (0.0 for kinds without one)."""

    def after_optimizer_step(
        self, step: int, compute_loss: Callable[[], torch.Tensor], optimizer, stepped: bool = True
    ) -> dict[str, int]:
        """Called after optimizer step `step` (1-based); `stepped` is False when the gradient scaler skipped that
        step (fp16 overflow). Returns {layer: new rank} of layers whose rank changed."""

    def ranks(self) -> dict[str, int]: ...

    def rank_history(self) -> list[tuple[int, str, int]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def save_lora(self, folder: Path) -> None:
        """Write the adapter as diffusers LoRA weights (`pytorch_lora_weights.safetensors`)."""


@runtime_checkable
class GatedAdapter(Protocol):
    """An adapter with per-rank gates that the training loop's optimizer does not train (ARENA): their own
    optimizer is stepped beside it, through the same gradient scaler, which unscales its gradients and skips its
    step on inf/NaN as it does the other's."""

    gate_optimizer: torch.optim.Optimizer


def submodels(pipeline: StableDiffusionPipeline) -> dict[str, nn.Module]:
    return {name: getattr(pipeline, name) for name in SUBMODELS}


def prefixed_linear_names(models: dict[str, nn.Module]) -> list[str]:
    """Every nn.Linear of the submodels, named "<submodel>.<module>" as the tuners adapting several models take them."""
    return [f"{name}.{layer}" for name, model in models.items() for layer in linear_module_names(model)]


def save_peft_state(folder: Path, exported: dict[str, tuple[LoraConfig, dict[str, torch.Tensor]] | None],
                    pruning_fix: str = "") -> None:
    """Save unconverted PEFT state dicts of the submodels (None: a submodel with no adapted layer left):
    converting them to the legacy diffusers format loses layers of adapters with per-layer ranks (DESIGN.md,
    checked on these versions). `pruning_fix`: the setting to change when a kind that prunes kept nothing."""
    layers, metadata = {}, {}
    for name in SUBMODELS:
        if exported[name] is not None:
            config, layers[f"{name}_lora_layers"] = exported[name]
            metadata[f"{name}_lora_adapter_metadata"] = config.to_dict()
    if not layers:
        raise MethodConfigError(
            "the adapter kept no rank in any layer of the UNet or the text encoder, so there is nothing to export: "
            f"its pruning was too strong for this run ({pruning_fix or 'this kind does not prune: please report it'})"
        )
    StableDiffusionPipeline.save_lora_weights(folder, **layers, **metadata, safe_serialization=True)


class TunerAdapter:
    """The adapter of one of our low-rank tuners (`self.tuner`: a SeLoraModel or an ArenaModel, which share their
    interface: trainable parameters, ranks, rank history, checkpoint state, PEFT export per submodel)."""

    tuner: SeLoraModel | ArenaModel
    PRUNING_FIX = ""  # the setting that keeps more ranks, for a kind whose ranks can fall to 0

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.tuner.trainable_parameters()

    def regularisation(self) -> float:
        return 0.0

    def ranks(self) -> dict[str, int]:
        return self.tuner.ranks()

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self.tuner.rank_history)

    def state_dict(self) -> dict:
        return self.tuner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tuner.load_state_dict(state)

    def save_lora(self, folder: Path) -> None:
        save_peft_state(folder, {name: self.tuner.to_peft(name) for name in SUBMODELS}, self.PRUNING_FIX)
