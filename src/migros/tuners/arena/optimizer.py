"""ARENA's update of its gates: proximal gradient descent on L + λ‖v‖₁."""

import torch


def soft_threshold(values: torch.Tensor, threshold: float) -> torch.Tensor:
    """ξ(x, τ) = sign(x) · max(|x| − τ, 0), the proximal operator of τ‖·‖₁."""
    return torch.sign(values) * torch.clamp(values.abs() - threshold, min=0.0)


class ProximalGradientDescent(torch.optim.Optimizer):
    """Minimises L(p) + l1_penalty · ‖p‖₁ by proximal gradient steps,

        p ← ξ(p − lr · ∂L/∂p, lr · l1_penalty),

    a plain gradient step on the loss, then the proximal operator of the penalty: the paper's update of the gates,
    v ← ξ(v − ρ ∇_v L, ρ λ). The gradient is not normalised (as Adam's step is), so l1_penalty is weighed against
    the loss: at a fixed point an entry is either zero with |∂L/∂p| ≤ l1_penalty or non-zero with
    ∂L/∂p = −l1_penalty · sign(p). An entry at zero leaves it again as soon as the loss pulls harder than that.
    The first `warmup_steps` steps taken on a parameter are plain gradient steps (no penalty).

    It is an optimizer so that a gradient scaler (`torch.amp.GradScaler.step`) unscales its gradients and skips
    its step on inf/NaN, as it does Adam's.
    """

    def __init__(self, params, lr: float, l1_penalty: float, warmup_steps: int = 0):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not l1_penalty >= 0:
            raise ValueError(f"l1_penalty must be >= 0, got {l1_penalty!r}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        super().__init__(params, {"lr": lr, "l1_penalty": l1_penalty, "warmup_steps": warmup_steps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                state["step"] = state.get("step", 0) + 1
                penalised = state["step"] > group["warmup_steps"]
                threshold = group["lr"] * group["l1_penalty"] if penalised else 0.0
                param.copy_(soft_threshold(param - group["lr"] * param.grad, threshold))
        return loss
