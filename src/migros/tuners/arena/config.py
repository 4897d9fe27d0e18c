"""Settings of an ARENA adapter (regularised LoRA whose ranks shrink by an l1 penalty on per-rank gates)."""

from dataclasses import dataclass


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        if not self.target_modules or not all(isinstance(name, str) and name for name in self.target_modules):
            raise ValueError("target_modules must be a non-empty list of module names")
        duplicates = sorted({name for name in self.target_modules if self.target_modules.count(name) > 1})
        if duplicates:
            raise ValueError(f"target_modules lists these names more than once: {duplicates}")
        if not _is_int(self.init_rank) or self.init_rank < 1:
            raise ValueError(f"init_rank must be an integer >= 1, got {self.init_rank!r}")
        if not isinstance(self.l1_penalty, (int, float)) or not self.l1_penalty >= 0:
            raise ValueError(f"l1_penalty (λ) must be a number >= 0, got {self.l1_penalty!r}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.lora_alpha, (int, float)) or not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be a positive number, got {self.lora_alpha!r}")
        if not _is_int(self.init_seed):
            raise ValueError(f"init_seed must be an integer, got {self.init_seed!r}")
