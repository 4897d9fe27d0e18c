"""peft's AdaLoRA, kind `adalora`."""

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from peft import AdaLoraConfig
from peft.tuners.adalora import AdaLoraModel, SVDLinear
from torch import nn

from migros.adapters.base import SUBMODELS, prefixed_linear_names, save_peft_state, submodels
from migros.tuners.lowrank import peft_lora


@dataclass(frozen=True)
class AdaLoraSettings:
    """peft's AdaLoRA settings, under peft's names."""

    init_r: int  # initial rank of every layer
    target_r: int  # average rank the global budget ends at
    tinit: int  # optimizer steps before the budget starts to fall
    tfinal: int  # last optimizer steps at the final budget
    deltaT: int  # noqa: N815 (peft's name) -- optimizer steps between two re-allocations
    alpha: float
    orth_reg_weight: float  # weight of the orthogonality penalty on A and B


def adalora_orthogonality_penalty(model: nn.Module, weight: float, adapter_name: str) -> torch.Tensor:
    """AdaLoRA's orthogonality penalty as peft's `AdaLoraModel.forward` adds it to a `.loss`: `weight` × the mean
    over every A and B of the AdaLoRA layers in `model` of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F."""
    norms = []
    for layer in (module for module in model.modules() if isinstance(module, SVDLinear)):
        a, b = layer.lora_A[adapter_name], layer.lora_B[adapter_name]
        for gram in (a @ a.T, b.T @ b):
            norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device, dtype=gram.dtype)))
    return weight * torch.stack(norms).mean()


class AdaLoraAdapter:
    """peft's AdaLoRA (SVD-form ranks, pruned by importance to a global budget that falls on a cubic schedule)
    on every nn.Linear of the UNet and the text encoder, trained together under one budget; exported as a
    standard PEFT LoRA of the surviving ranks.

    peft adds AdaLoRA's orthogonality penalty only when the model's output has a `.loss`, which a UNet's has
    not, so `regularisation` computes it as peft does and the training loop adds it. peft's
    `update_and_allocate` (importance from |p · ∂L/∂p|, so it runs while the step's gradients are still there)
    follows each optimizer step that was taken, with peft's 0-based step count. peft allocates the final budget
    at exactly one step, total_step − tfinal, and afterwards only re-applies the last pattern; when the gradient
    scaler skips that step, the first step taken after it makes the final allocation instead.
    """

    Settings = AdaLoraSettings
    INITIAL_RANK_KEY = "init_r"
    PRUNING_FIX = "raise target_r"
    ADAPTER_NAME = "default"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: AdaLoraSettings, seed: int, total_steps: int):
        models = nn.ModuleDict(submodels(pipeline))
        targets = prefixed_linear_names(models)
        self.config = AdaLoraConfig(
            init_r=settings.init_r, target_r=settings.target_r, tinit=settings.tinit, tfinal=settings.tfinal,
            deltaT=settings.deltaT, total_step=total_steps, lora_alpha=settings.alpha,
            orth_reg_weight=settings.orth_reg_weight, target_modules=targets,
        )
        torch.manual_seed(seed)  # peft draws the A and B init from the global generator
        self.tuner = AdaLoraModel(models, self.config, self.ADAPTER_NAME)
        self.layers = {name: module for name, module in self.tuner.model.named_modules() if isinstance(module, SVDLinear)}
        self._history = [(0, name, settings.init_r) for name in self.layers]
        self.final_allocation_step = total_steps - settings.tfinal  # peft's 0-based step of the final allocation
        self.final_allocation_done = False

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.tuner.model.parameters() if p.requires_grad]

    def regularisation(self) -> torch.Tensor:
        return adalora_orthogonality_penalty(self.tuner.model, self.config.orth_reg_weight, self.ADAPTER_NAME)

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        if not stepped:
            return {}
        before = self.ranks()
        peft_step = step - 1
        if peft_step >= self.final_allocation_step and not self.final_allocation_done:
            peft_step = self.final_allocation_step  # the step peft allocates the final budget at, if it was skipped
            self.final_allocation_done = True
        self.tuner.update_and_allocate(peft_step)
        changed = {name: rank for name, rank in self.ranks().items() if rank != before[name]}
        self._history += [(step, name, rank) for name, rank in changed.items()]
        return changed

    def kept(self) -> dict[str, torch.Tensor]:
        """Per layer, which of its init_r ranks the budget keeps (all until the first allocation)."""
        pattern = self.config.rank_pattern or {}
        kept = {}
        for name, layer in self.layers.items():
            mask = pattern.get(f"{name}.lora_E.{self.ADAPTER_NAME}")  # peft keys the pattern by the E parameter
            kept[name] = torch.ones(layer.r[self.ADAPTER_NAME], dtype=torch.bool) if mask is None else torch.tensor(mask)
        return kept

    def ranks(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.kept().items()}

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self._history)

    def state_dict(self) -> dict:
        """Everything needed to resume: weights, the allocator's importance averages, rank pattern, whether the
        final budget was allocated, and the rank history."""
        allocator = self.tuner.rankallocator
        return {
            "weights": {name: p.detach().clone() for name, p in self.tuner.model.named_parameters() if "lora_" in name},
            "importance": {key: {n: t.clone() for n, t in getattr(allocator, key).items()}
                           for key in ("ipt", "exp_avg_ipt", "exp_avg_unc")},
            "rank_pattern": dict(self.config.rank_pattern or {}) or None,
            "final_allocation_done": self.final_allocation_done,
            "rank_history": [list(record) for record in self._history],
        }

    def load_state_dict(self, state: dict) -> None:
        parameters = dict(self.tuner.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                parameters[name].copy_(value)
        for key, values in state["importance"].items():
            setattr(self.tuner.rankallocator, key, {n: t.clone() for n, t in values.items()})
        self.config.rank_pattern = state["rank_pattern"]
        self.final_allocation_done = state["final_allocation_done"]
        self._history = [tuple(record) for record in state["rank_history"]]

    def save_lora(self, folder: Path) -> None:
        kept = self.kept()
        exported = {}
        for submodel in SUBMODELS:
            factors = {}
            for name, layer in self.layers.items():
                if not name.startswith(f"{submodel}.") or not kept[name].any():
                    continue
                a, b = layer.lora_A[self.ADAPTER_NAME], layer.lora_B[self.ADAPTER_NAME]
                e = layer.lora_E[self.ADAPTER_NAME]
                scale = layer.scaling[self.ADAPTER_NAME] / (layer.ranknum[self.ADAPTER_NAME] + 1e-5)  # as SVDLinear
                keep = kept[name].to(a.device)
                factors[name.removeprefix(f"{submodel}.")] = ((a * e)[keep].detach(), (b[:, keep] * scale).detach())
            exported[submodel] = peft_lora(factors) if factors else None
        save_peft_state(folder, exported, self.PRUNING_FIX)
