"""Inject ARENA layers into models, prune their ranks by proximal steps, checkpoint them, export them to PEFT.

ARENA (`../shared/papers/arena-regularized-lora-*.md`): LoRA as ΔW = B diag(v) A with the objective
L(A, B, v) + λ‖v‖₁, minimised by block-coordinate descent: the optimizer's step on A, B and v for L, then a
proximal step on v for λ‖v‖₁ — soft-thresholding by τ = η λ, η the gates' learning rate at that step. Ranks are
the non-zero gates; SeLoRA grows ranks, ARENA prunes them to what the task needs.
"""

from collections.abc import Mapping
from dataclasses import asdict

import torch
from peft import LoraConfig
from torch import nn

from ..lowrank import frozen_models, inject_layers, peft_lora
from .config import ArenaConfig
from .layer import ArenaLinear

ADAPTER_STATE = ("lora_A", "lora_B", "gate", "active")  # an ArenaLinear's own tensors (its base layer is frozen)


class ArenaModel:
    """ARENA adapters on one model, or on several trained together (a mapping such as {"unet": unet,
    "text_encoder": text_encoder}, target names prefixed with the key). The models are modified in place: all
    their parameters are frozen and each target becomes an ArenaLinear; only the adapters train."""

    def __init__(self, model: nn.Module | Mapping[str, nn.Module], config: ArenaConfig):
        self.config = config
        self.model, model_names = frozen_models(model)
        generator = torch.Generator().manual_seed(config.init_seed)
        self.layers: dict[str, ArenaLinear] = inject_layers(
            self.model, config.target_modules, model_names,
            lambda linear: ArenaLinear(linear, config.init_rank, config.lora_alpha, generator),
        )
        self.rank_history: list[tuple[int, str, int]] = [(0, name, layer.rank) for name, layer in self.layers.items()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter parameters, in a fixed order (give these to the optimizer)."""
        return [param for layer in self.layers.values() for param in (layer.lora_A, layer.lora_B, layer.gate)]

    def ranks(self) -> dict[str, int]:
        return {name: layer.rank for name, layer in self.layers.items()}

    def gate_learning_rate(self, optimizer: torch.optim.Optimizer) -> float:
        """The current learning rate of the optimizer's parameter group that holds the gates."""
        gate = next(iter(self.layers.values())).gate
        for group in optimizer.param_groups:
            if any(param is gate for param in group["params"]):
                return float(group["lr"])
        raise ValueError("the optimizer does not train the ARENA gates; give it trainable_parameters()")

    def proximal_step(self, step: int, optimizer: torch.optim.Optimizer, stepped: bool = True) -> dict[str, int]:
        """After optimizer step `step` (1-based): soft-threshold every gate vector by lr · λ, once warm-up is over
        and if the step was taken (a gradient scaler can skip one). Returns {layer: new rank} of the layers whose
        rank fell."""
        if not stepped or step <= self.config.warmup_steps:
            return {}
        threshold = self.gate_learning_rate(optimizer) * self.config.l1_penalty
        pruned = {name: layer.rank for name, layer in self.layers.items() if layer.proximal_step(threshold)}
        self.rank_history += [(step, name, rank) for name, rank in pruned.items()]
        return pruned

    def state_dict(self) -> dict:
        """Everything needed to resume: config, adapter weights and gates, pruned gates, rank history."""
        return {
            "config": asdict(self.config),
            "weights": {f"{name}.{key}": value.detach().clone() for name, layer in self.layers.items()
                        for key, value in layer.state_dict().items() if key in ADAPTER_STATE},
            "rank_history": [list(record) for record in self.rank_history],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != asdict(self.config):
            differing = sorted(k for k, v in asdict(self.config).items() if state["config"].get(k) != v)
            raise ValueError(f"checkpoint was saved with a different ArenaConfig (fields {differing})")
        for name, layer in self.layers.items():
            saved = {key: state["weights"][f"{name}.{key}"] for key in ADAPTER_STATE}
            with torch.no_grad():
                for key, value in saved.items():
                    getattr(layer, key).copy_(value)
        self.rank_history = [tuple(record) for record in state["rank_history"]]

    def to_peft(self, submodel: str | None = None) -> tuple[LoraConfig, dict[str, torch.Tensor]] | None:
        """Export the surviving ranks of the adapters inside `submodel` (e.g. "unet"; None = all) as a standard
        PEFT LoRA (`migros.tuners.lowrank.peft_lora`: gates and scale folded into B, per-layer ranks); layers
        pruned to rank 0 are left out. None when no layer of `submodel` kept a rank."""
        prefix = "" if submodel is None else f"{submodel}."
        layers = {name[len(prefix):]: layer for name, layer in self.layers.items() if name.startswith(prefix)}
        if not layers:
            raise ValueError(f"no ARENA layers inside {submodel!r}")
        factors = {name: layer.factors() for name, layer in layers.items() if layer.rank > 0}
        return peft_lora(factors) if factors else None
