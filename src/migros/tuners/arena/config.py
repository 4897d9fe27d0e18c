"""Settings of an ARENA adapter (regularised LoRA whose ranks shrink by an l1 penalty on per-rank gates)."""

from dataclasses import dataclass

from ..lowrank import check_common_settings, is_int


@dataclass
class ArenaConfig:
    """What to adapt and how ranks shrink.

    target_modules: exact qualified names of the nn.Linear modules to adapt (with the model's key as prefix when
        several models are adapted together, e.g. ``"unet.mid_block..."``).
    init_rank: rank every adapter starts with; ranks only shrink from it.
    l1_penalty: λ of the penalty λ‖v‖₁ on each layer's gate vector v. It is minimised by a proximal step after
        every optimizer step, a soft-threshold of v by τ = lr · λ (lr: the gates' current learning rate). With
        Adam, whose steps are about lr in size, λ is the penalty in units of one Adam step: λ ≥ 1 prunes every
        gate the loss does not push away from zero consistently, λ = 0 never prunes.
    warmup_steps: optimizer steps before the first proximal step, so that B (initialised to zero) and the gates
        first learn which directions matter.
    lora_alpha: scale numerator; a layer is scaled by lora_alpha / init_rank, kept as ranks shrink.
    init_seed: seeds the generator that draws every A row, so runs repeat.
    """

    target_modules: list[str]
    init_rank: int
    l1_penalty: float
    warmup_steps: int = 0
    lora_alpha: float = 1.0
    init_seed: int = 0

    def __post_init__(self):
        self.target_modules = list(self.target_modules)
        check_common_settings(self.target_modules, self.init_rank, self.lora_alpha, self.init_seed)
        if not isinstance(self.l1_penalty, (int, float)) or not self.l1_penalty >= 0:
            raise ValueError(f"l1_penalty (λ) must be a number >= 0, got {self.l1_penalty!r}")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
