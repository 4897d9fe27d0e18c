"""Fine-tuning methods, chosen in config by `kind`. Each adapts the UNet and the text encoder of a Stable
Diffusion pipeline and exports a standard PEFT LoRA that a stock diffusers pipeline loads with
`load_lora_weights`.

The interface and what the kinds share are in `base`, each kind in its own module; `ADAPTERS` below is the one
place that maps a `kind` to its module.

A `methods` entry of the config is `kind`, the adapter's own settings (its kind's settings dataclass) and
optionally training keys (`TRAINING_KEYS`: overrides such as the PI-CAI SeLoRA methods' own `epochs`, and a
`privacy` defence), which are split off before the adapter is built. The schema checks the keys of each kind when the config is validated and
fills in their defaults; `method_settings` checks them again for callers that build adapters without Snakemake.
"""

import dataclasses

from diffusers import StableDiffusionPipeline

from migros.adapters.adalora import AdaLoraAdapter
from migros.adapters.arena import ArenaAdapter
from migros.adapters.base import TRAINING_KEYS, TRAINING_OVERRIDES, Adapter, MethodConfigError
from migros.adapters.lora import PeftLoraAdapter
from migros.adapters.selora import SeLoraAdapter

__all__ = [
    "ADAPTERS", "TRAINING_KEYS", "TRAINING_OVERRIDES", "Adapter", "MethodConfigError", "build_adapter", "method_settings",
    "training_overrides",
]

ADAPTERS = {"lora": PeftLoraAdapter, "selora": SeLoraAdapter, "arena": ArenaAdapter, "adalora": AdaLoraAdapter}


def method_settings(method: dict, name: str = "method") -> object:
    """The adapter settings (an instance of its kind's `Settings`) of one `methods` entry (training overrides left out), its keys checked against its
    kind; errors name the method (`name`) and the key."""
    kind = method.get("kind")
    if kind not in ADAPTERS:
        raise MethodConfigError(f"methods.{name}: unknown kind {kind!r}; known kinds: {sorted(ADAPTERS)}")
    settings_class = ADAPTERS[kind].Settings
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    given = {key: value for key, value in method.items() if key != "kind" and key not in TRAINING_KEYS}
    if unknown := sorted(set(given) - set(fields)):
        raise MethodConfigError(
            f"methods.{name}: a {kind} method takes no key {', '.join(map(repr, unknown))}; its keys are "
            f"{sorted(fields)}, plus the training keys {list(TRAINING_KEYS)}"
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
