"""Self-Expanding LoRA (migros.tuners.selora), kind `selora`."""

from dataclasses import dataclass

from diffusers import StableDiffusionPipeline

from migros.adapters.base import MethodConfigError, TunerAdapter, prefixed_linear_names, submodels
from migros.tuners.selora import SeLoraConfig, SeLoraModel


@dataclass(frozen=True)
class SeLoraSettings:
    threshold: float  # λ: a layer grows when FI(r+1)/FI(r) >= λ
    expand_every: int  # optimizer steps between Fisher trials
    alpha: float
    max_rank: int | None  # None: no cap
    init_rank: int

    def __post_init__(self):
        # the schema bounds each rank, not their order
        if self.max_rank is not None and self.max_rank < self.init_rank:
            raise MethodConfigError(f"a selora method's max_rank ({self.max_rank}) must not be below its init_rank "
                                    f"({self.init_rank})")


class SeLoraAdapter(TunerAdapter):
    """Self-Expanding LoRA (migros.tuners.selora), exported with per-layer ranks."""

    Settings = SeLoraSettings
    INITIAL_RANK_KEY = "init_rank"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: SeLoraSettings, seed: int, total_steps: int):
        models = submodels(pipeline)
        targets = prefixed_linear_names(models)
        config = SeLoraConfig(
            target_modules=targets, expand_every=settings.expand_every, init_rank=settings.init_rank,
            max_rank=settings.max_rank, expansion_threshold=settings.threshold, lora_alpha=settings.alpha,
            init_seed=seed,
        )
        self.tuner = SeLoraModel(models, config)

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return self.tuner.maybe_expand(step, compute_loss, optimizer, stepped)
