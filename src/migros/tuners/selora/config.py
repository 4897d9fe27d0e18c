"""Settings of a Self-Expanding LoRA (SeLoRA) adapter."""

from dataclasses import dataclass

from ..lowrank import check_common_settings, is_int


@dataclass
class SeLoraConfig:
    """What to adapt and how ranks grow.

    target_modules: exact qualified names of the nn.Linear modules to adapt (as in ``model.named_modules()``;
        when several models are adapted together, prefixed with the model's key, e.g. ``"unet.conv_in"``).
    init_rank: rank every adapter starts with.
    max_rank: no layer grows past this rank; None = no cap.
    expansion_threshold: λ; a layer expands when FI(r+1) / FI(r) ≥ λ. The ratio is ≥ 1 by construction
        (see layer.py), so λ < 1 would mean the same as λ = 1 and is rejected.
    expand_every: optimizer steps between two Fisher trials.
    lora_alpha: scale numerator; a rank-r adapter is scaled by lora_alpha / r.
    init_seed: seeds the generator that draws every A row (initial ones and trial ones), so runs repeat.
    """

    target_modules: list[str]
    expand_every: int
    init_rank: int = 1
    max_rank: int | None = None
    expansion_threshold: float = 1.0
    lora_alpha: float = 1.0
    init_seed: int = 0

    def __post_init__(self):
        self.target_modules = list(self.target_modules)
        check_common_settings(self.target_modules, self.init_rank, self.lora_alpha, self.init_seed)
        if self.max_rank is not None and (not is_int(self.max_rank) or self.max_rank < self.init_rank):
            raise ValueError(
                f"max_rank must be None or an integer >= init_rank ({self.init_rank}), got {self.max_rank!r}"
            )
        if not is_int(self.expand_every) or self.expand_every < 1:
            raise ValueError(f"expand_every must be an integer >= 1, got {self.expand_every!r}")
        if not isinstance(self.expansion_threshold, (int, float)) or not self.expansion_threshold >= 1.0:
            raise ValueError(
                "expansion_threshold (λ) must be a number >= 1: FI(r+1)/FI(r) is never below 1, "
                f"got {self.expansion_threshold!r}"
            )
