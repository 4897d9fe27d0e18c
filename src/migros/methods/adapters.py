"""The adapter interface of the training loop, and its implementations: peft LoRA and AdaLoRA, SeLoRA, ARENA.

Adapted modules: every nn.Linear of the UNet and of the text encoder (`linear_module_names`), named explicitly,
so a layer is never skipped because its name matches no pattern; the VAE stays frozen.

A `methods` entry of the config is `kind`, the adapter's own settings (its kind's settings dataclass) and
optionally training overrides (`TRAINING_OVERRIDES`, e.g. the PI-CAI SeLoRA methods' own `epochs`), which are
split off before the adapter is built. The schema checks the keys of each kind when the config is validated and
fills in their defaults; `method_settings` checks them again for callers that build adapters without Snakemake.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from diffusers import StableDiffusionPipeline
from peft import AdaLoraConfig, LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.adalora import AdaLoraModel, SVDLinear
from torch import nn

from migros.tuners.arena import ArenaConfig, ArenaModel
from migros.tuners.lowrank import linear_module_names, peft_lora
from migros.tuners.selora import SeLoraConfig, SeLoraModel

SUBMODELS = ("unet", "text_encoder")
# Keys of a `methods` entry that override the shared `finetune` settings for that method, not adapter settings.
TRAINING_OVERRIDES = ("epochs",)


class MethodConfigError(ValueError):
    """A `methods` entry whose keys do not fit its kind."""


@dataclass(frozen=True)
class LoraSettings:
    rank: int
    alpha: float


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


@dataclass(frozen=True)
class ArenaSettings:
    rank: int  # initial rank; ranks only shrink
    l1_penalty: float  # λ of λ‖v‖₁ on the gates, in units of one Adam step (see ArenaConfig)
    alpha: float
    warmup_steps: int  # optimizer steps before pruning starts


@dataclass(frozen=True)
class AdaLoraSettings:
    """peft's AdaLoRA settings, under peft's names."""

    init_r: int  # initial rank of every layer
    target_r: int  # average rank the global budget ends at
    tinit: int  # optimizer steps before the budget starts to fall
    tfinal: int  # last optimizer steps at the final budget
    deltaT: int  # noqa: N815 (peft's name) -- optimizer steps between two re-allocations
    alpha: float
    orth_reg_weight: float  # weight of the orthogonality penalty on A and B


class Adapter(Protocol):
    """Built as `Kind(pipeline, settings, seed, total_steps)`; attaches itself to the pipeline's UNet and text
    encoder."""

    def trainable_parameters(self) -> list[nn.Parameter]: ...

    def regularisation(self) -> torch.Tensor | float:
        """A penalty that the training loop adds to the loss (0.0 for kinds without one)."""

    def after_optimizer_step(
        self, step: int, compute_loss: Callable[[], torch.Tensor], optimizer, stepped: bool = True
    ) -> dict[str, int]:
        """Called after optimizer step `step` (1-based); `stepped` is False when the gradient scaler skipped that
        step (fp16 overflow). Returns {layer: new rank} of layers that grew."""

    def ranks(self) -> dict[str, int]: ...

    def rank_history(self) -> list[tuple[int, str, int]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def save_lora(self, folder: Path) -> None:
        """Write the adapter as diffusers LoRA weights (`pytorch_lora_weights.safetensors`)."""


def submodels(pipeline: StableDiffusionPipeline) -> dict[str, nn.Module]:
    return {name: getattr(pipeline, name) for name in SUBMODELS}


def prefixed_linear_names(models: dict[str, nn.Module]) -> list[str]:
    """Every nn.Linear of the submodels, named "<submodel>.<module>" as the tuners adapting several models take them."""
    return [f"{name}.{layer}" for name, model in models.items() for layer in linear_module_names(model)]


def save_peft_state(folder: Path, exported: dict[str, tuple[LoraConfig, dict[str, torch.Tensor]] | None]) -> None:
    """Save unconverted PEFT state dicts of the submodels (None: a submodel with no adapted layer left):
    converting them to the legacy diffusers format loses layers of adapters with per-layer ranks (DESIGN.md,
    checked on these versions)."""
    layers, metadata = {}, {}
    for name in SUBMODELS:
        if exported[name] is not None:
            config, layers[f"{name}_lora_layers"] = exported[name]
            metadata[f"{name}_lora_adapter_metadata"] = config.to_dict()
    if not layers:
        raise MethodConfigError(
            "the adapter kept no rank in any layer of the UNet or the text encoder, so there is nothing to export: "
            "its pruning was too strong for this run (ARENA: lower l1_penalty; AdaLoRA: raise target_r)"
        )
    StableDiffusionPipeline.save_lora_weights(folder, **layers, **metadata, safe_serialization=True)


class PeftLoraAdapter:
    """Vanilla LoRA at a fixed rank, through peft (scale lora_alpha / rank)."""

    Settings = LoraSettings

    def __init__(self, pipeline: StableDiffusionPipeline, settings: LoraSettings, seed: int, total_steps: int):
        rank, alpha = settings.rank, settings.alpha
        self.models = submodels(pipeline)
        self.configs = {}
        # peft shortens a long target_modules list to name suffixes, so the layer names are kept here.
        layers = {name: linear_module_names(model) for name, model in self.models.items()}
        torch.manual_seed(seed)  # peft draws the A init from the global generator
        for name, model in self.models.items():
            model.requires_grad_(False)
            self.configs[name] = LoraConfig(r=rank, lora_alpha=alpha, target_modules=layers[name], init_lora_weights=True)
            model.add_adapter(self.configs[name])
        self._history = [(0, f"{name}.{layer}", rank) for name in self.models for layer in layers[name]]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for model in self.models.values() for p in model.parameters() if p.requires_grad]

    def regularisation(self) -> float:
        return 0.0

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return {}

    def ranks(self) -> dict[str, int]:
        return {layer: rank for _, layer, rank in self._history}

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self._history)

    def state_dict(self) -> dict:
        return {name: get_peft_model_state_dict(model) for name, model in self.models.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, model in self.models.items():
            set_peft_model_state_dict(model, state[name])

    def save_lora(self, folder: Path) -> None:
        states = self.state_dict()
        save_peft_state(folder, {name: (self.configs[name], states[name]) for name in SUBMODELS})


class TunerAdapter:
    """The adapter of one of our low-rank tuners (`self.tuner`: a SeLoraModel or an ArenaModel, which share their
    interface: trainable parameters, ranks, rank history, checkpoint state, PEFT export per submodel)."""

    tuner: SeLoraModel | ArenaModel

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.tuner.trainable_parameters()

    def regularisation(self) -> float:
        return 0.0

    def ranks(self) -> dict[str, int]:
        return self.tuner.ranks()

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self.tuner.rank_history)

    def state_dict(self) -> dict:
        return self.tuner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tuner.load_state_dict(state)

    def save_lora(self, folder: Path) -> None:
        save_peft_state(folder, {name: self.tuner.to_peft(name) for name in SUBMODELS})


class SeLoraAdapter(TunerAdapter):
    """Self-Expanding LoRA (migros.tuners.selora), exported with per-layer ranks."""

    Settings = SeLoraSettings

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


class ArenaAdapter(TunerAdapter):
    """ARENA (migros.tuners.arena): gated LoRA whose ranks shrink by proximal l1 steps (not by a loss term, so
    `regularisation` stays 0), exported with the surviving per-layer ranks."""

    Settings = ArenaSettings

    def __init__(self, pipeline: StableDiffusionPipeline, settings: ArenaSettings, seed: int, total_steps: int):
        models = submodels(pipeline)
        targets = prefixed_linear_names(models)
        config = ArenaConfig(target_modules=targets, init_rank=settings.rank, l1_penalty=settings.l1_penalty,
                             warmup_steps=settings.warmup_steps, lora_alpha=settings.alpha, init_seed=seed)
        self.tuner = ArenaModel(models, config)

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        return self.tuner.proximal_step(step, optimizer, stepped)


def adalora_orthogonality_penalty(model: nn.Module, weight: float, adapter_name: str) -> torch.Tensor:
    """AdaLoRA's orthogonality penalty as peft's `AdaLoraModel.forward` adds it to a `.loss`: `weight` × the mean
    over every A and B of the AdaLoRA layers in `model` of ‖AAᵀ − I‖_F and ‖BᵀB − I‖_F."""
    norms = []
    for layer in (module for module in model.modules() if isinstance(module, SVDLinear)):
        a, b = layer.lora_A[adapter_name], layer.lora_B[adapter_name]
        for gram in (a @ a.T, b.T @ b):
            norms.append(torch.linalg.matrix_norm(gram - torch.eye(len(gram), device=gram.device, dtype=gram.dtype)))
    return weight * torch.stack(norms).mean()


class AdaLoraAdapter:
    """peft's AdaLoRA (SVD-form ranks, pruned by importance to a global budget that falls on a cubic schedule)
    on every nn.Linear of the UNet and the text encoder, trained together under one budget; exported as a
    standard PEFT LoRA of the surviving ranks.

    peft adds AdaLoRA's orthogonality penalty only when the model's output has a `.loss`, which a UNet's has
    not, so `regularisation` computes it as peft does and the training loop adds it. peft's
    `update_and_allocate` (importance from |p · ∂L/∂p|, so it runs while the step's gradients are still there)
    follows each optimizer step, with peft's 0-based step count.
    """

    Settings = AdaLoraSettings
    ADAPTER_NAME = "default"

    def __init__(self, pipeline: StableDiffusionPipeline, settings: AdaLoraSettings, seed: int, total_steps: int):
        models = nn.ModuleDict(submodels(pipeline))
        targets = prefixed_linear_names(models)
        self.config = AdaLoraConfig(
            init_r=settings.init_r, target_r=settings.target_r, tinit=settings.tinit, tfinal=settings.tfinal,
            deltaT=settings.deltaT, total_step=total_steps, lora_alpha=settings.alpha,
            orth_reg_weight=settings.orth_reg_weight, target_modules=targets,
        )
        torch.manual_seed(seed)  # peft draws the A and B init from the global generator
        self.tuner = AdaLoraModel(models, self.config, self.ADAPTER_NAME)
        self.layers = {name: module for name, module in self.tuner.model.named_modules() if isinstance(module, SVDLinear)}
        self._history = [(0, name, settings.init_r) for name in self.layers]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.tuner.model.parameters() if p.requires_grad]

    def regularisation(self) -> torch.Tensor:
        return adalora_orthogonality_penalty(self.tuner.model, self.config.orth_reg_weight, self.ADAPTER_NAME)

    def after_optimizer_step(self, step, compute_loss, optimizer, stepped=True) -> dict[str, int]:
        if not stepped:
            return {}
        before = self.ranks()
        self.tuner.update_and_allocate(step - 1)
        changed = {name: rank for name, rank in self.ranks().items() if rank != before[name]}
        self._history += [(step, name, rank) for name, rank in changed.items()]
        return changed

    def kept(self) -> dict[str, torch.Tensor]:
        """Per layer, which of its init_r ranks the budget keeps (all until the first allocation)."""
        pattern = self.config.rank_pattern or {}
        kept = {}
        for name, layer in self.layers.items():
            mask = pattern.get(f"{name}.lora_E.{self.ADAPTER_NAME}")  # peft keys the pattern by the E parameter
            kept[name] = torch.ones(layer.r[self.ADAPTER_NAME], dtype=torch.bool) if mask is None else torch.tensor(mask)
        return kept

    def ranks(self) -> dict[str, int]:
        return {name: int(mask.sum()) for name, mask in self.kept().items()}

    def rank_history(self) -> list[tuple[int, str, int]]:
        return list(self._history)

    def state_dict(self) -> dict:
        """Everything needed to resume: weights, the allocator's importance averages, rank pattern and history."""
        allocator = self.tuner.rankallocator
        return {
            "weights": {name: p.detach().clone() for name, p in self.tuner.model.named_parameters() if "lora_" in name},
            "importance": {key: {n: t.clone() for n, t in getattr(allocator, key).items()}
                           for key in ("ipt", "exp_avg_ipt", "exp_avg_unc")},
            "rank_pattern": dict(self.config.rank_pattern or {}) or None,
            "rank_history": [list(record) for record in self._history],
        }

    def load_state_dict(self, state: dict) -> None:
        parameters = dict(self.tuner.model.named_parameters())
        with torch.no_grad():
            for name, value in state["weights"].items():
                parameters[name].copy_(value)
        for key, values in state["importance"].items():
            setattr(self.tuner.rankallocator, key, {n: t.clone() for n, t in values.items()})
        self.config.rank_pattern = state["rank_pattern"]
        self._history = [tuple(record) for record in state["rank_history"]]

    def save_lora(self, folder: Path) -> None:
        kept = self.kept()
        exported = {}
        for submodel in SUBMODELS:
            factors = {}
            for name, layer in self.layers.items():
                if not name.startswith(f"{submodel}.") or not kept[name].any():
                    continue
                a, b = layer.lora_A[self.ADAPTER_NAME], layer.lora_B[self.ADAPTER_NAME]
                e = layer.lora_E[self.ADAPTER_NAME]
                scale = layer.scaling[self.ADAPTER_NAME] / (layer.ranknum[self.ADAPTER_NAME] + 1e-5)  # as SVDLinear
                keep = kept[name].to(a.device)
                factors[name.removeprefix(f"{submodel}.")] = ((a * e)[keep].detach(), (b[:, keep] * scale).detach())
            exported[submodel] = peft_lora(factors) if factors else None
        save_peft_state(folder, exported)


ADAPTERS = {"lora": PeftLoraAdapter, "selora": SeLoraAdapter, "arena": ArenaAdapter, "adalora": AdaLoraAdapter}


def method_settings(method: dict, name: str = "method") -> LoraSettings | SeLoraSettings | ArenaSettings | AdaLoraSettings:
    """The adapter settings of one `methods` entry (training overrides left out), its keys checked against its
    kind; errors name the method (`name`) and the key."""
    kind = method.get("kind")
    if kind not in ADAPTERS:
        raise MethodConfigError(f"methods.{name}: unknown kind {kind!r}; known kinds: {sorted(ADAPTERS)}")
    settings_class = ADAPTERS[kind].Settings
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    given = {key: value for key, value in method.items() if key != "kind" and key not in TRAINING_OVERRIDES}
    if unknown := sorted(set(given) - set(fields)):
        raise MethodConfigError(
            f"methods.{name}: a {kind} method takes no key {', '.join(map(repr, unknown))}; its keys are "
            f"{sorted(fields)}, plus the training overrides {list(TRAINING_OVERRIDES)}"
        )
    if missing := sorted(set(fields) - set(given)):
        raise MethodConfigError(f"methods.{name}: a {kind} method needs {', '.join(map(repr, missing))} (validating "
                                f"the config fills in the schema's defaults)")
    return settings_class(**given)


def training_overrides(method: dict) -> dict:
    """The `finetune` settings that a `methods` entry overrides for itself, e.g. {"epochs": 150}."""
    return {key: method[key] for key in TRAINING_OVERRIDES if key in method}


def build_adapter(pipeline: StableDiffusionPipeline, method: dict, seed: int, total_steps: int,
                  name: str = "method") -> Adapter:
    """`method` is one entry of config `methods`, e.g. {kind: selora, threshold: 1.04, expand_every: 25, ...};
    training overrides in it (such as `epochs`) are for the training loop and are left out here. `total_steps`:
    the optimizer steps the adapter will be trained for (AdaLoRA's budget schedule is laid out over them)."""
    settings = method_settings(method, name)
    return ADAPTERS[method["kind"]](pipeline, settings, seed=seed, total_steps=total_steps)
