"""What the low-rank tuners (SeLoRA, ARENA) share: finding and replacing the adapted nn.Linear layers, the A
initialisation, and the export of per-layer-rank adapters as a standard PEFT LoRA."""

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import torch
from peft import LoraConfig
from torch import nn


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_common_settings(target_modules: list[str], init_rank: int, lora_alpha: float, init_seed: int) -> None:
    """The checks every low-rank tuner config makes of the settings they share."""
    if not target_modules or not all(isinstance(name, str) and name for name in target_modules):
        raise ValueError("target_modules must be a non-empty list of module names")
    duplicates = sorted({name for name in target_modules if target_modules.count(name) > 1})
    if duplicates:
        raise ValueError(f"target_modules lists these names more than once: {duplicates}")
    if not is_int(init_rank) or init_rank < 1:
        raise ValueError(f"init_rank must be an integer >= 1, got {init_rank!r}")
    if not isinstance(lora_alpha, (int, float)) or not lora_alpha > 0:
        raise ValueError(f"lora_alpha must be a positive number, got {lora_alpha!r}")
    if not is_int(init_seed):
        raise ValueError(f"init_seed must be an integer, got {init_seed!r}")


def frozen_models(model: nn.Module | Mapping[str, nn.Module]) -> tuple[nn.Module, list[str]]:
    """One model, or several adapted together (a mapping such as {"unet": unet, "text_encoder": text_encoder},
    whose keys prefix the target names) as one frozen module, and the names that denote whole models."""
    if isinstance(model, nn.Module):
        root, model_names = model, [""]
    else:
        root, model_names = nn.ModuleDict(dict(model)), ["", *model]
    return root.requires_grad_(False), model_names


class LowRankLinear(nn.Module):
    """A frozen nn.Linear plus the factors of a LoRA update, A ∈ R^{r×in} (as peft's init) and B ∈ R^{out×r}
    (zeros), scaled by lora_alpha / r; subclasses define the forward pass and how r changes."""

    def __init__(self, base_layer: nn.Linear, rank: int, lora_alpha: float, generator: torch.Generator):
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps an nn.Linear, got {type(base_layer).__name__}")
        super().__init__()
        self.base_layer = base_layer.requires_grad_(False)
        weight = base_layer.weight
        self.lora_alpha = float(lora_alpha)
        self.lora_A = nn.Parameter(random_a_rows(rank, base_layer.in_features, generator, weight))
        self.lora_B = nn.Parameter(weight.new_zeros(base_layer.out_features, rank))
        self.scaling = self.lora_alpha / rank


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
