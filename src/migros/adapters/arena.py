"""ARENA (migros.tuners.arena), kind `arena`."""

from dataclasses import dataclass

from diffusers import StableDiffusionPipeline

from migros.adapters.base import TunerAdapter, prefixed_linear_names, submodels
from migros.tuners.arena import ArenaConfig, ArenaModel


@dataclass(frozen=True)
class ArenaSettings:
    rank: int  # initial rank; ranks only shrink
    l1_penalty: float  # λ of λ‖v‖₁ on the gates, in units of one Adam step (see ArenaConfig)
    alpha: float
    warmup_steps: int  # optimizer steps before pruning starts


class ArenaAdapter(TunerAdapter):
    """ARENA (migros.tuners.arena): gated LoRA whose ranks shrink by proximal l1 steps (not by a loss term, so
    `regularisation` stays 0), exported with the surviving per-layer ranks."""

    Settings = ArenaSettings
    INITIAL_RANK_KEY = "rank"
    PRUNING_FIX = "lower l1_penalty"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: ArenaSettings, seed: int, total_steps: int):
        models = submodels(pipeline)
        targets = prefixed_linear_names(models)
        config = ArenaConfig(target_modules=targets, init_rank=settings.rank, l1_penalty=settings.l1_penalty,
                             warmup_steps=settings.warmup_steps, lora_alpha=settings.alpha, init_seed=seed)
        self.tuner = ArenaModel(models, config)

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return self.tuner.proximal_step(step, optimizer, stepped)
