"""ARENA linear layer: a frozen nn.Linear plus a low-rank update with one gate per rank.

    y = base(x) + s · ((x Aᵀ) ⊙ v) Bᵀ,   A ∈ R^{r×in} (as peft's LoRA), v ∈ R^r (ones), B ∈ R^{out×r} (zeros)

i.e. ΔW = s · B diag(v) A. The rank is the number of non-zero gates: a gate at zero removes its A row and B column
from the update, and it may leave zero again (`ProximalGradientDescent`), so ranks can fall and rise. The scale
s = lora_alpha / init_rank stays fixed as ranks change, so a gate's contribution does not depend on the others.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..lowrank import LowRankLinear


class ArenaLinear(LowRankLinear):
    """A frozen nn.Linear with a gated LoRA update (see the module docstring)."""

    def __init__(self, base_layer: nn.Linear, rank: int, lora_alpha: float, generator: torch.Generator):
        super().__init__(base_layer, rank, lora_alpha, generator)
        self.gate = nn.Parameter(base_layer.weight.new_ones(rank))

    @property
    def rank(self) -> int:
        return int(torch.count_nonzero(self.gate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        # As peft: the update runs in the adapter's dtype and the sum is returned in the base output's dtype.
        update = F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A) * self.gate, self.lora_B)
        return (result + update * self.scaling).to(result.dtype)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of the live ranks (non-zero gates) with the gates and the scale folded into B: B·A is the whole
        update."""
        live = self.gate.detach() != 0
        scaled_b = self.lora_B.detach().float()[:, live] * (self.gate.detach().float()[live] * self.scaling)
        return self.lora_A.detach()[live], scaled_b.to(self.lora_B.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank} of {self.gate.numel()}, lora_alpha={self.lora_alpha}"
