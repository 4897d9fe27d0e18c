"""ARENA (migros.tuners.arena), kind `arena`."""

from dataclasses import dataclass

import torch
from diffusers import StableDiffusionPipeline

from migros.adapters.base import TunerAdapter, prefixed_linear_names, submodels
from migros.tuners.arena import ArenaConfig, ArenaModel


@dataclass(frozen=True)
class ArenaSettings:
    rank: int  # initial rank, the most a layer can have
    l1_penalty: float  # λ of λ‖v‖₁ on the gates, in units of the loss's gradient with respect to a gate
    gate_learning_rate: float  # ρ: step size of the gates' proximal gradient step (threshold ρλ)
    alpha: float
    warmup_steps: int  # gate steps without the penalty first


class ArenaAdapter(TunerAdapter):
    """ARENA (migros.tuners.arena): gated LoRA whose ranks are set by an l1 penalty on the gates, minimised by the
    paper's proximal gradient steps (not by a loss term, so `regularisation` stays 0); exported with the live
    per-layer ranks. The training loop's optimizer trains A and B; the gates have `gate_optimizer`."""

    Settings = ArenaSettings
    INITIAL_RANK_KEY = "rank"
    PRUNING_FIX = "lower l1_penalty"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: ArenaSettings, seed: int, total_steps: int):
        models = submodels(pipeline)
        targets = prefixed_linear_names(models)
        config = ArenaConfig(target_modules=targets, init_rank=settings.rank, l1_penalty=settings.l1_penalty,
                             gate_learning_rate=settings.gate_learning_rate, warmup_steps=settings.warmup_steps,
                             lora_alpha=settings.alpha, init_seed=seed)
        self.tuner = ArenaModel(models, config)

    @property
    def gate_optimizer(self) -> torch.optim.Optimizer:
        return self.tuner.gate_optimizer

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return self.tuner.log_rank_changes(step)
