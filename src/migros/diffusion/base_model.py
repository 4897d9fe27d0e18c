"""Loading the base model offline, and the record of the `base_model` stage that downstream rules load.

`load_pipeline` is the one code path that loads a base model: SD v1.5 from the Hugging Face cache or any
pipeline folder, the demo model (`migros.diffusion.demo`) included. Nothing is downloaded at run time: a model
that is not on disk stops the run with the steps that put it there.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from huggingface_hub import constants as hub_constants

from migros.diffusion.demo.pretraining import pretrain_demo_model
from migros.diffusion.model_ids import SAME_WEIGHTS, SD15_ID
from migros.settings import StageSettings

LOGGER = logging.getLogger(__name__)

# A Hugging Face model id, "owner/name"; any other source that is not an existing path is a missing folder.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
BASE_MODEL_RECORD = "base_model.json"


class BaseModelError(RuntimeError):
    """The base model cannot be loaded from disk; the message says how to put it there."""


def load_pipeline(
    source: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | None = None,
) -> StableDiffusionPipeline:
    """Load a Stable Diffusion pipeline from a local folder or, for a model id, from the Hugging Face cache only.

    `source` is a folder written by `save_pretrained` if such a path exists, otherwise a model id
    ("owner/name") looked up in `cache_dir` (default: the hub cache of HF_HOME / HF_HUB_CACHE), never online.
    """
    path = Path(source).expanduser()
    if path.exists() and not (path / "model_index.json").is_file():
        raise BaseModelError(
            f"Base model folder {path} is not a diffusers pipeline folder (no model_index.json).\n" + _how_to_place()
        )
    if not path.exists() and not HUB_ID.fullmatch(str(source)):
        raise BaseModelError(f"Base model folder {path} does not exist.\n" + _how_to_place())
    # A model id is also looked up under the ids of the same weights (SD v1.5's former id), so a cache made
    # before the move serves a config that names the new id, and the other way round.
    candidates = [str(path)] if path.exists() else [str(source), *SAME_WEIGHTS.get(str(source), ())]
    first_error = None
    for candidate in candidates:
        try:
            pipeline = StableDiffusionPipeline.from_pretrained(
                candidate,
                dtype=dtype,
                cache_dir=cache_dir,
                local_files_only=True,
                # The safety checker is an NSFW classifier for natural images: on MRI it would only blank images at
                # random, and it needs weights of its own. Medical images need no such filter.
                safety_checker=None,
                requires_safety_checker=False,
            )
        except OSError as error:
            first_error = first_error or error
            continue
        if candidate != candidates[0]:
            LOGGER.warning("%s is not in the Hugging Face cache; using %s, the same weights", source, candidate)
        return pipeline.to(device)
    if path.exists():
        problem = f"Base model folder {path} is incomplete or unreadable: {first_error}"
    else:
        cache = cache_dir or hub_constants.HF_HUB_CACHE
        problem = (
            f"Base model {' / '.join(map(repr, candidates))} is not in the Hugging Face cache ({cache}) and no "
            f"folder of that name exists; nothing is downloaded at run time. "
            f"({type(first_error).__name__}: {first_error})"
        )
    downloadable = SD15_ID if path.exists() or str(source) in SAME_WEIGHTS else str(source)
    raise BaseModelError(problem + "\n" + _how_to_place(downloadable)) from first_error


def _how_to_place(model_id: str = SD15_ID) -> str:
    """The ways to put a base model on a machine without internet, for the error messages."""
    return (
        "To place it, either\n"
        f"  1. on a machine with internet run `huggingface-cli download {model_id}` (or `hf download {model_id}`), "
        "copy its cache folder (~/.cache/huggingface) here and set HF_HOME to the copy (or HF_HUB_CACHE to its "
        "hub/ folder), then use the model id as the base model source in the config; or\n"
        f"  2. write the pipeline into a folder with StableDiffusionPipeline.from_pretrained({model_id!r})"
        ".save_pretrained(folder), copy the folder here and set the base model source in the config to its path."
    )


@dataclass(frozen=True)
class DemoModelSettings:
    """The `base_model.demo` section: the keyword arguments of `pretrain_demo_model` that the config sets."""

    image_size: int
    seed: int
    corpus_size: int
    vae_steps: int
    unet_steps: int
    latent_downsampling: int


@dataclass(frozen=True)
class BaseModelSettings(StageSettings):
    """The `base_model` section; `demo` is used only when `source` is "demo"."""

    SECTION = "base_model"
    source: str
    demo: DemoModelSettings


def prepare_base_model(settings: BaseModelSettings, out_dir: Path) -> None:
    """What the `base_model` rule does: pretrain the demo model, or check that the configured model loads.

    Either way `out_dir/base_model.json` names what downstream rules load, through `load_prepared_base_model`,
    so SD v1.5 and the demo model go through the same code path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.source == "demo":
        pretrain_demo_model(out_dir / "pipeline", **asdict(settings.demo))
        record = {"source": "pipeline", "relative_to_record": True}
    else:
        load_pipeline(settings.source)  # fails here, with instructions, rather than in every fine-tuning job
        record = {"source": settings.source, "relative_to_record": False}
    (out_dir / BASE_MODEL_RECORD).write_text(json.dumps(record, indent=2))


def load_prepared_base_model(
    base_model_dir: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> StableDiffusionPipeline:
    """The base model that `prepare_base_model` recorded in `base_model_dir`, loaded by `load_pipeline`."""
    record = json.loads((base_model_dir / BASE_MODEL_RECORD).read_text())
    source = base_model_dir / record["source"] if record["relative_to_record"] else record["source"]
    return load_pipeline(source, device=device, dtype=dtype)
