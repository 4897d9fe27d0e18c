"""ARENA linear layer: a frozen nn.Linear plus a low-rank update with one gate per rank.

    y = base(x) + s · ((x Aᵀ) ⊙ v) Bᵀ,   A ∈ R^{r×in} (as peft's LoRA), v ∈ R^r (ones), B ∈ R^{out×r} (zeros)

i.e. ΔW = s · B diag(v) A. The rank is the number of non-zero gates. A gate that the proximal step (soft
thresholding) sets to zero is pruned for good: it is zeroed again after every later step, so momentum in the
optimizer cannot revive it, and its A row and B column no longer take part in the update. The scale
s = lora_alpha / init_rank stays fixed as ranks shrink, so pruning a gate that is already zero changes nothing.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..lowrank import LowRankLinear


def soft_threshold(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal operator of threshold·‖·‖₁: sign(x) · max(|x| − threshold, 0)."""
    return torch.sign(values) * torch.clamp(values.abs() - threshold, min=0.0)


class ArenaLinear(LowRankLinear):
    """A frozen nn.Linear with a gated LoRA update (see the module docstring)."""

    def __init__(self, base_layer: nn.Linear, rank: int, lora_alpha: float, generator: torch.Generator):
        super().__init__(base_layer, rank, lora_alpha, generator)
        self.gate = nn.Parameter(base_layer.weight.new_ones(rank))
        self.register_buffer("active", torch.ones(rank, dtype=torch.bool, device=base_layer.weight.device))

    @property
    def rank(self) -> int:
        return int(self.active.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        # As peft: the update runs in the adapter's dtype and the sum is returned in the base output's dtype.
        update = F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A) * self.gate, self.lora_B)
        return (result + update * self.scaling).to(result.dtype)

    @torch.no_grad()
    def proximal_step(self, threshold: float) -> bool:
        """Soft-threshold the gates by `threshold`, keep pruned gates at zero and prune those that reached it;
        True when the rank changed."""
        shrunk = soft_threshold(self.gate.float(), threshold).to(self.gate.dtype)
        shrunk[~self.active] = 0
        self.gate.copy_(shrunk)
        before = self.rank
        self.active &= shrunk != 0
        return self.rank != before

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of the surviving ranks with the gates and the scale folded into B: B·A is the whole update."""
        keep = self.active
        scaled_b = self.lora_B.detach().float()[:, keep] * (self.gate.detach().float()[keep] * self.scaling)
        return self.lora_A.detach()[keep], scaled_b.to(self.lora_B.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank} of {self.gate.numel()}, lora_alpha={self.lora_alpha}"
