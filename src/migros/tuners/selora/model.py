"""Inject SeLoRA layers into models, grow their ranks by Fisher trials, checkpoint them, export them to PEFT.

Expansion rule: a layer grows r → r + 1 when FI(r+1) / FI(r) ≥ λ (`expansion_threshold`), FI being the sum of
squared loss gradients over the layer's A and B on one batch. This is the direction the public reference code
tests; the paper prints the inverse ratio FI(r)/FI(r+1). The trial entries leave the output unchanged, so
FI(r+1) ≥ FI(r) always (layer.py): the paper's direction would never expand for λ > 1, and at its λ = 1
("allows any type of improvement") only when the trial brings no gradient at all, the opposite of what the
paper describes. A layer whose gradients are all zero (FI(r+1) = 0) never expands.
"""

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict

import torch
from peft import LoraConfig
from torch import nn

from ..lowrank import frozen_models, inject_layers, peft_lora, random_a_rows
from .config import SeLoraConfig
from .layer import Growth, SeLoraLinear, pad_zeros

log = logging.getLogger(__name__)

# Power of the gradient each optimizer state entry is built from: it scales like grad_factor ** power.
_STATE_GRADIENT_POWER = {"exp_avg": 1, "exp_avg_sq": 2, "max_exp_avg_sq": 2, "momentum_buffer": 1}


def _per_entry_state(optimizer: torch.optim.Optimizer, param: nn.Parameter, shape: torch.Size) -> list[str]:
    """Keys of the optimizer state tensors of `param` that hold one value per entry (of the given shape)."""
    state = optimizer.state.get(param, {})
    return [key for key, value in state.items() if torch.is_tensor(value) and value.shape == shape]


def check_optimizer_state(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter]) -> None:
    """Raise before anything grows if a per-entry optimizer state could not be carried across an expansion."""
    for param in params:
        unknown = [key for key in _per_entry_state(optimizer, param, param.shape) if key not in _STATE_GRADIENT_POWER]
        if unknown:
            raise ValueError(f"cannot carry optimizer state {unknown} across a rank expansion")


def grow_optimizer_state(optimizer: torch.optim.Optimizer, growth: Growth) -> None:
    """Carry a grown parameter's optimizer state over: old entries transformed like their gradient, new ones 0.

    Scalars such as Adam's `step` are kept.
    """
    old_shape = list(growth.param.shape)
    old_shape[growth.dim] -= growth.added
    state = optimizer.state.get(growth.param, {})
    for key in _per_entry_state(optimizer, growth.param, torch.Size(old_shape)):
        scaled = state[key] * growth.grad_factor ** _STATE_GRADIENT_POWER[key]
        state[key] = pad_zeros(scaled, growth.dim, growth.added)


class SeLoraModel:
    """SeLoRA adapters on one model, or on several trained together (e.g. a UNet and its text encoder).

    `model` is an nn.Module, or a mapping such as {"unet": unet, "text_encoder": text_encoder}, in which case
    target names carry the key as prefix ("unet.mid_block...."). The models are modified in place: all their
    parameters are frozen and each target becomes a SeLoraLinear; only the adapters train.
    """

    def __init__(self, model: nn.Module | Mapping[str, nn.Module], config: SeLoraConfig):
        self.config = config
        self.model, model_names = frozen_models(model)
        self.generator = torch.Generator().manual_seed(config.init_seed)
        self.layers = inject_layers(
            self.model, config.target_modules, model_names,
            lambda linear: SeLoraLinear(linear, config.init_rank, config.lora_alpha, self.generator),
        )
        self.rank_history: list[tuple[int, str, int]] = [(0, name, layer.rank) for name, layer in self.layers.items()]
        self.trial_due = False  # a trial whose step was skipped or whose gradients overflowed waits for the next step

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The adapter parameters, in a fixed order (give these to the optimizer)."""
        return [param for layer in self.layers.values() for param in (layer.lora_A, layer.lora_B)]

    def ranks(self) -> dict[str, int]:
        return {name: layer.rank for name, layer in self.layers.items()}

    def maybe_expand(
        self,
        step: int,
        compute_loss: Callable[[], torch.Tensor],
        optimizer: torch.optim.Optimizer | None,
        stepped: bool = True,
    ) -> dict[str, int]:
        """Run a Fisher trial when one is due: every expand_every optimizer steps (`step` = steps done so far).

        `compute_loss` returns the scalar training loss on one batch with the models as they are (it may be
        scaled, e.g. by an fp16 gradient scaler: the ratio does not depend on it). The trial uses
        torch.autograd.grad, so no .grad attribute is touched and the normal training step is unaffected.
        Returns {layer: new rank} of the layers that grew.

        Mixed precision: a step that the gradient scaler skipped (`stepped` False) runs no trial, and a trial
        whose gradients overflow grows nothing; either way the trial stays due and runs after the next step
        that was taken, so an overflow never triggers nor corrupts an expansion.

        Release the training step's graph (e.g. `del loss`) before calling: parameters grow in place, and a live
        graph keeps their gradient accumulators, which would then produce gradients of the old shape.
        """
        if step > 0 and step % self.config.expand_every == 0:
            self.trial_due = True
        if not self.trial_due or not stepped:
            return {}
        max_rank = self.config.max_rank
        candidates = [name for name, layer in self.layers.items() if max_rank is None or layer.rank < max_rank]
        if not candidates:
            self.trial_due = False
            return {}
        fisher, trial_rows = self._fisher_trial(candidates, compute_loss)
        if not all(math.isfinite(score) for scores in fisher.values() for score in scores):
            log.warning("step %d: the Fisher trial's gradients overflowed; it runs again after the next step", step)
            return {}
        self.trial_due = False
        threshold = self.config.expansion_threshold
        grown = [name for name, (fi_r, fi_r1) in fisher.items() if fi_r1 > 0 and fi_r1 >= threshold * fi_r]
        return {name: self._grow(name, trial_rows[name], step, optimizer) for name in grown}

    def expand(self, names: Iterable[str], step: int, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
        """Grow the named layers by one rank now, with fresh random A rows (no trial); returns the new ranks."""
        names = list(names)
        unknown = [name for name in names if name not in self.layers]
        if unknown or len(set(names)) < len(names):
            raise ValueError(f"expand takes distinct SeLoRA layer names; unknown: {unknown}")
        max_rank = self.config.max_rank
        full = [name for name in names if max_rank is not None and self.layers[name].rank >= max_rank]
        if full:
            raise ValueError(f"layers already at max_rank {max_rank}: {full}")
        return {name: self._grow(name, self._random_rows(name, 1), step, optimizer) for name in names}

    def _random_rows(self, name: str, count: int) -> torch.Tensor:
        layer = self.layers[name]
        return random_a_rows(count, layer.base_layer.in_features, self.generator, layer.lora_A)

    def _fisher_trial(
        self, names: list[str], compute_loss: Callable[[], torch.Tensor]
    ) -> tuple[dict[str, tuple[float, float]], dict[str, torch.Tensor]]:
        """FI(r) and FI(r+1) of each named layer from one forward/backward with trial ranks attached.

        The trial does not change the forward pass, so the existing entries' gradients are those of the rank-r
        model: FI(r) sums them, FI(r+1) adds the trial entries' (see layer.py). Returns the scores and the
        trial A rows (used as the new rows of the layers that grow).
        """
        trials = {name: self.layers[name].attach_trial(self._random_rows(name, 1)) for name in names}
        try:
            with torch.enable_grad():
                loss = compute_loss()
            inputs = [t for name in names for t in (self.layers[name].lora_A, self.layers[name].lora_B, *trials[name])]
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        finally:
            for name in names:
                self.layers[name].detach_trial()
        squares = torch.stack(
            [g.detach().float().square().sum() if g is not None else torch.zeros((), device=loss.device) for g in grads]
        ).view(len(names), 4)
        existing = squares[:, :2].sum(dim=1)
        scores = torch.stack((existing, existing + squares[:, 2:].sum(dim=1)), dim=1).tolist()
        fisher = {name: (fi_r, fi_r1) for name, (fi_r, fi_r1) in zip(names, scores)}
        return fisher, {name: trials[name][0].detach() for name in names}

    def _grow(self, name: str, a_rows: torch.Tensor, step: int, optimizer: torch.optim.Optimizer | None) -> int:
        layer = self.layers[name]
        if optimizer is not None:
            check_optimizer_state(optimizer, (layer.lora_A, layer.lora_B))
        for growth in layer.grow(a_rows):
            if optimizer is not None:
                grow_optimizer_state(optimizer, growth)
        self.rank_history.append((step, name, layer.rank))
        return layer.rank

    def state_dict(self) -> dict:
        """Everything needed to resume: config, ranks, adapter weights, rank history, generator state."""
        return {
            "config": asdict(self.config),
            "ranks": self.ranks(),
            "weights": {
                f"{name}.{key}": param.detach()
                for name, layer in self.layers.items()
                for key, param in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B))
            },
            "rank_history": [list(record) for record in self.rank_history],
            "generator": self.generator.get_state(),
            "trial_due": self.trial_due,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` into freshly injected adapters, growing each layer to its saved rank first.

        Call it before `optimizer.load_state_dict`, so that the optimizer state meets parameters of the saved
        shapes (the parameters stay the same objects, so the optimizer may be created before or after).
        """
        if state["config"] != asdict(self.config):
            differing = sorted(k for k, v in asdict(self.config).items() if state["config"].get(k) != v)
            raise ValueError(f"checkpoint was saved with a different SeLoraConfig (fields {differing})")
        for name, rank in state["ranks"].items():
            layer = self.layers[name]
            if rank < layer.rank:
                raise ValueError(f"{name}: saved rank {rank} < current rank {layer.rank}; load into fresh adapters")
            if rank > layer.rank:
                layer.grow(layer.lora_A.new_zeros(rank - layer.rank, layer.lora_A.shape[1]))
            with torch.no_grad():
                layer.lora_A.copy_(state["weights"][f"{name}.lora_A"])
                layer.lora_B.copy_(state["weights"][f"{name}.lora_B"])
        self.rank_history = [tuple(record) for record in state["rank_history"]]
        self.generator.set_state(state["generator"])
        self.trial_due = state["trial_due"]

    def to_peft(self, submodel: str | None = None) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
        """Export the adapters inside `submodel` (e.g. "unet"; None = all) as a standard PEFT LoRA.

        Returns a LoraConfig and a state dict keyed like `peft.get_peft_model_state_dict` for that (sub)model
        ("<module>.lora_A.weight" / ".lora_B.weight", names relative to it), each layer's scale lora_alpha/r
        folded into its B (`migros.tuners.lowrank.peft_lora`).
        """
        prefix = "" if submodel is None else f"{submodel}."
        layers = {name[len(prefix) :]: layer for name, layer in self.layers.items() if name.startswith(prefix)}
        if not layers:
            raise ValueError(f"no SeLoRA layers inside {submodel!r}")
        return peft_lora({
            name: (layer.lora_A, (layer.lora_B.detach().float() * layer.scaling).to(layer.lora_B.dtype))
            for name, layer in layers.items()
        })
