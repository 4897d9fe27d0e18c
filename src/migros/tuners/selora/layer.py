"""SeLoRA linear layer: a frozen nn.Linear plus a low-rank update whose rank can grow during training.

    y = base(x) + s · (x Aᵀ) Bᵀ,   A ∈ R^{r×in} (kaiming-uniform, a=√5, as peft), B ∈ R^{out×r} (zeros)

Scale convention: s = lora_alpha / r, the standard LoRA one, so a rank-r SeLoRA layer trains exactly like a
rank-r peft LoRA layer with the same lora_alpha, and the change of s·BA per Adam step stays roughly independent
of r (with the constant scale of the public reference code it grows with r). Growing r → r + k therefore
multiplies the existing columns of B by c = (r + k) / r, so that s'·B' = s·B and the layer output is unchanged
(the new B columns are zero). In the new parameterisation the gradient of those columns is the old one times
1/c, so their Adam moments are carried over as exp_avg / c and exp_avg_sq / c²: the next normalised update
m/√v is the same as without the expansion, and later gradients mix with history expressed in the same units.
(Scaling the moments by c and c² would keep m/√v at that instant but weight the old history c² times too much
against new gradients.) A is untouched: its gradient depends on s·B only.

Fisher trial: the trial entries (one extra random A row, one extra zero B column) are run at the layer's
current scale s, so the forward pass is unchanged and the gradients of the existing entries are exactly those
of the rank-r model. One forward/backward with the trial entries attached thus gives both
FI(r) = Σ(∂L/∂A)² + Σ(∂L/∂B)² over the existing entries and FI(r+1) = FI(r) + the trial entries' share.
The new A row gets no gradient (its B column is zero), so FI(r+1) − FI(r) is the new B column's share, and
because every gradient is proportional to s the ratio FI(r+1)/FI(r) does not depend on the scale at all — the
decision is the one a constant-scale implementation would take for the same weights.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..lowrank import LowRankLinear


class Growth(NamedTuple):
    """How one parameter changed in an expansion; enough to carry its optimizer state over."""

    param: nn.Parameter
    dim: int  # dimension that grew
    added: int  # entries added along dim
    grad_factor: float  # gradient of the old entries in the new parameterisation / the gradient before


def pad_zeros(tensor: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    """`tensor` with `count` zero slices appended along `dim`."""
    shape = list(tensor.shape)
    shape[dim] = count
    return torch.cat((tensor, tensor.new_zeros(shape)), dim=dim)


class SeLoraLinear(LowRankLinear):
    """A frozen nn.Linear with a growable LoRA update (see the module docstring for the conventions)."""

    def __init__(self, base_layer: nn.Linear, rank: int, lora_alpha: float, generator: torch.Generator):
        super().__init__(base_layer, rank, lora_alpha, generator)
        self._trial: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        lora_A, lora_B = self.lora_A, self.lora_B
        if self._trial is not None:
            lora_A = torch.cat((lora_A, self._trial[0]))
            lora_B = torch.cat((lora_B, self._trial[1]), dim=1)
        # As peft: the update runs in the adapter's dtype and the sum is returned in the base output's dtype.
        update = F.linear(F.linear(x.to(lora_A.dtype), lora_A), lora_B)
        return (result + update * self.scaling).to(result.dtype)

    def attach_trial(self, a_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add one trial rank (row `a_row` of A, a zero column of B) to the forward pass; returns both leaves."""
        a = a_row.detach().clone().requires_grad_(True)
        b = self.lora_B.new_zeros(self.lora_B.shape[0], 1, requires_grad=True)
        self._trial = (a, b)
        return self._trial

    def detach_trial(self) -> None:
        self._trial = None

    def grow(self, a_rows: torch.Tensor) -> list[Growth]:
        """Append `a_rows` to A and zero columns to B, keeping the output unchanged (B rescaled, see module doc).

        Parameters grow in place (`.data` replaced) so optimizers keep referencing them; an existing .grad is
        carried into the new parameterisation the same way as the optimizer moments.
        """
        old_rank, added = self.rank, a_rows.shape[0]
        factor = (old_rank + added) / old_rank
        with torch.no_grad():
            self.lora_A.data = torch.cat((self.lora_A.data, a_rows.to(self.lora_A)))
            self.lora_B.data = pad_zeros(self.lora_B.data * factor, 1, added)
        self.scaling = self.lora_alpha / (old_rank + added)
        growths = [Growth(self.lora_A, 0, added, 1.0), Growth(self.lora_B, 1, added, 1.0 / factor)]
        for growth in growths:
            grad = growth.param.grad
            if grad is not None:
                growth.param.grad = pad_zeros(grad * growth.grad_factor, growth.dim, added)
        return growths

    def extra_repr(self) -> str:
        return f"rank={self.rank}, lora_alpha={self.lora_alpha}"
