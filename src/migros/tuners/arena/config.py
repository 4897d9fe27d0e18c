"""Settings of an ARENA adapter (regularised LoRA whose ranks are set by an l1 penalty on per-rank gates)."""

from dataclasses import dataclass

from ..lowrank import check_common_settings, is_int


@dataclass
class ArenaConfig:
    """What to adapt and how the gates are penalised and stepped.

    target_modules: exact qualified names of the nn.Linear modules to adapt (with the model's key as prefix when
        several models are adapted together, e.g. ``"unet.mid_block..."``).
    init_rank: rank every adapter starts with, and the most it can have.
    l1_penalty: λ of the objective L + λ‖v‖₁ on each layer's gate vector v, in units of the loss's gradient with
        respect to a gate: a gate ends at zero where the loss pulls it less than λ (|∂L/∂v| ≤ λ at v = 0) and is
        kept where it pulls harder. Choose it from the size of the gates' gradients; 0 never prunes.
    gate_learning_rate: step size ρ of the gates' proximal gradient step v ← ξ(v − ρ ∇_v L, ρ λ) (a plain
        gradient step, not Adam's; A and B keep the training loop's optimizer). It sets how fast the gates move,
        not where they end: a gate the loss does not pull moves by ρλ per step, so one that starts at 1 reaches 0
        after about 1 / (ρλ) steps.
    warmup_steps: gate steps without the penalty first, so that B (initialised to zero, so the gates get no
        gradient at first) and the gates learn which directions matter before any is pruned.
    lora_alpha: scale numerator; a layer is scaled by lora_alpha / init_rank, kept as ranks change.
    init_seed: seeds the generator that draws every A row, so runs repeat.
    """

    target_modules: list[str]
    init_rank: int
    l1_penalty: float
    gate_learning_rate: float
    warmup_steps: int = 0
    lora_alpha: float = 1.0
    init_seed: int = 0

    def __post_init__(self):
        self.target_modules = list(self.target_modules)
        check_common_settings(self.target_modules, self.init_rank, self.lora_alpha, self.init_seed)
        if not isinstance(self.l1_penalty, (int, float)) or not self.l1_penalty >= 0:
            raise ValueError(f"l1_penalty (λ) must be a number >= 0, got {self.l1_penalty!r}")
        if not isinstance(self.gate_learning_rate, (int, float)) or not self.gate_learning_rate > 0:
            raise ValueError(f"gate_learning_rate (ρ) must be a number > 0, got {self.gate_learning_rate!r}")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
