"""Inject ARENA layers into models, step their gates, checkpoint them, export them to PEFT.

ARENA (`../shared/papers/arena-regularized-lora-*.md`): LoRA as ΔW = B diag(v) A with the objective
L(A, B, v) + λ‖v‖₁, minimised by block-coordinate descent: the training loop's optimizer (Adam) steps A and B on
L, and the gates take the paper's proximal gradient step v ← ξ(v − ρ ∇_v L, ρ λ) (`gate_optimizer`), from the same
backward pass. Ranks are the non-zero gates; SeLoRA grows ranks, ARENA sets them by the penalty.
"""

from collections.abc import Mapping
from dataclasses import asdict

import torch
from peft import LoraConfig
from torch import nn

from ..lowrank import frozen_models, inject_layers, peft_lora
from .config import ArenaConfig
from .layer import ArenaLinear
from .optimizer import ProximalGradientDescent

ADAPTER_STATE = ("lora_A", "lora_B", "gate")  # an ArenaLinear's own tensors (its base layer is frozen)


class ArenaModel:
    """ARENA adapters on one model, or on several trained together (a mapping such as {"unet": unet,
    "text_encoder": text_encoder}, target names prefixed with the key). The models are modified in place: all
    their parameters are frozen and each target becomes an ArenaLinear; only the adapters train.

    A training step: backward of the loss, a step of the caller's optimizer on `trainable_parameters()` (A and B)
    and a step of `gate_optimizer` (the gates), then `log_rank_changes(step)`.
    """

    def __init__(self, model: nn.Module | Mapping[str, nn.Module], config: ArenaConfig):
        self.config = config
        self.model, model_names = frozen_models(model)
        generator = torch.Generator().manual_seed(config.init_seed)
        self.layers: dict[str, ArenaLinear] = inject_layers(
            self.model, config.target_modules, model_names,
            lambda linear: ArenaLinear(linear, config.init_rank, config.lora_alpha, generator),
        )
        self.gate_optimizer = ProximalGradientDescent(
            [layer.gate for layer in self.layers.values()], lr=config.gate_learning_rate,
            l1_penalty=config.l1_penalty, warmup_steps=config.warmup_steps,
        )
        self.rank_history: list[tuple[int, str, int]] = [(0, name, layer.rank) for name, layer in self.layers.items()]
        self.logged_ranks = self.ranks()  # the last rank in `rank_history` of each layer

    def trainable_parameters(self) -> list[nn.Parameter]:
        """A and B of every layer, in a fixed order: give these to the optimizer (the gates have `gate_optimizer`)."""
        return [param for layer in self.layers.values() for param in (layer.lora_A, layer.lora_B)]

    def ranks(self) -> dict[str, int]:
        return {name: layer.rank for name, layer in self.layers.items()}

    def log_rank_changes(self, step: int) -> dict[str, int]:
        """After training step `step`: {layer: new rank} of the layers whose rank changed since it was last logged,
        added to `rank_history`."""
        changed = {name: rank for name, rank in self.ranks().items() if rank != self.logged_ranks[name]}
        self.rank_history += [(step, name, rank) for name, rank in changed.items()]
        self.logged_ranks.update(changed)
        return changed

    def state_dict(self) -> dict:
        """Everything needed to resume: config, adapter weights and gates, the gates' step counts (warm-up), rank
        history."""
        return {
            "config": asdict(self.config),
            "weights": {f"{name}.{key}": value.detach().clone() for name, layer in self.layers.items()
                        for key, value in layer.state_dict().items() if key in ADAPTER_STATE},
            "gate_optimizer": self.gate_optimizer.state_dict(),
            "rank_history": [list(record) for record in self.rank_history],
        }

    def load_state_dict(self, state: dict) -> None:
        if state["config"] != asdict(self.config):
            differing = sorted(k for k, v in asdict(self.config).items() if state["config"].get(k) != v)
            raise ValueError(f"checkpoint was saved with a different ArenaConfig (fields {differing})")
        for name, layer in self.layers.items():
            with torch.no_grad():
                for key in ADAPTER_STATE:
                    getattr(layer, key).copy_(state["weights"][f"{name}.{key}"])
        self.gate_optimizer.load_state_dict(state["gate_optimizer"])
        self.rank_history = [tuple(record) for record in state["rank_history"]]
        self.logged_ranks = {name: rank for _, name, rank in self.rank_history}

    def to_peft(self, submodel: str | None = None) -> tuple[LoraConfig, dict[str, torch.Tensor]] | None:
        """Export the live ranks of the adapters inside `submodel` (e.g. "unet"; None = all) as a standard PEFT
        LoRA (`migros.tuners.lowrank.peft_lora`: gates and scale folded into B, per-layer ranks); layers with no
        live rank are left out. None when no layer of `submodel` has one."""
        prefix = "" if submodel is None else f"{submodel}."
        layers = {name[len(prefix):]: layer for name, layer in self.layers.items() if name.startswith(prefix)}
        if not layers:
            raise ValueError(f"no ARENA layers inside {submodel!r}")
        factors = {name: layer.factors() for name, layer in layers.items() if layer.rank > 0}
        return peft_lora(factors) if factors else None
