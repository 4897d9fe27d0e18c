"""What the low-rank tuners (SeLoRA, ARENA) share: finding and replacing the adapted nn.Linear layers, the A
initialisation, and the export of per-layer-rank adapters as a standard PEFT LoRA."""

import math
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from peft import LoraConfig
from torch import nn


def linear_module_names(model: nn.Module) -> list[str]:
    """Qualified names of every nn.Linear in `model` (the pipeline adapts all of them)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def random_a_rows(count: int, in_features: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Rows distributed as peft's A init: kaiming_uniform(a=√5) is U(-1/√in, 1/√in).

    Drawn on the CPU from `generator`, then moved, so a seed gives the same rows on every device.
    """
    bound = 1.0 / math.sqrt(in_features)
    rows = torch.empty(count, in_features).uniform_(-bound, bound, generator=generator)
    return rows.to(device=like.device, dtype=like.dtype)


def inject_layers(
    root: nn.Module, targets: list[str], model_names: Iterable[str], build: Callable[[nn.Linear], nn.Module]
) -> dict[str, nn.Module]:
    """Replace every target nn.Linear of `root` by `build(linear)`; any missing or non-Linear target is an error.

    A target that is a whole model (`model_names`) is refused: it is replaced inside our wrapper only, and the
    caller would keep training the unadapted object.
    """
    modules = dict(root.named_modules())
    whole = [name for name in targets if name in model_names]
    if whole:
        raise ValueError(f"targets must be modules inside a model, not a whole model: {whole}; wrap it first")
    missing = [name for name in targets if name not in modules]
    if missing:
        raise ValueError(f"target modules not found in the model: {missing}")
    not_linear = {name: type(modules[name]).__name__ for name in targets if not isinstance(modules[name], nn.Linear)}
    if not_linear:
        raise TypeError(f"target modules must be nn.Linear: {not_linear}")
    layers = {}
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        layers[name] = build(modules[name])
        setattr(modules[parent_name], child_name, layers[name])
    return layers


def peft_lora(factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """A standard PEFT LoRA of layers with their own ranks: `factors` maps a module name (relative to the model
    it will be loaded into) to (A, B) of shapes (r, in) and (out, r) whose product B·A is the layer's whole
    update, scale included.

    Every layer gets alpha = its rank (scale 1): diffusers' `load_lora_weights` assumes exactly this when a file
    carries no alphas, so `save_lora_weights(unet_lora_layers=...)` works with or without the config as
    metadata. The most common rank is the config's `r`, the others go to `rank_pattern`.
    """
    if not factors:
        raise ValueError("no layers to export")
    ranks = {name: a.shape[0] for name, (a, _) in factors.items()}
    if zero := sorted(name for name, rank in ranks.items() if rank == 0):
        raise ValueError(f"layers of rank 0 cannot be exported, leave them out: {zero}")
    r = Counter(ranks.values()).most_common(1)[0][0]
    rank_pattern = {name: rank for name, rank in ranks.items() if rank != r}
    config = LoraConfig(r=r, lora_alpha=r, target_modules=list(factors), rank_pattern=rank_pattern,
                        alpha_pattern=dict(rank_pattern))
    state = {}
    for name, (a, b) in factors.items():
        state[f"{name}.lora_A.weight"] = a.detach().clone()
        state[f"{name}.lora_B.weight"] = b.detach().clone()
    return config, state
