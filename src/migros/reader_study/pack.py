"""Building the study pack of one dataset (`migros.reader_study.pack_format` describes the folder): what readers
judge, the key that only the study server reads, and the statement of the study's power.

Every reader judges the same items (so that readers can be compared and their agreement measured); each reader
gets their own order and sides (`migros.reader_study.layout`). Each image is used once in a pack, so no reader
sees an image twice.
"""

import io
import itertools
import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from migros.evaluation.statistics import INTERVAL_CONFIDENCE
from migros.images import open_image
from migros.reader_study.pack_format import (
    CALIBRATION, CLASS_NAMES, FORMAT, IMAGES, KEY_JSON, REAL, STUDY_JSON, TRIAL, PackError,
)
from migros.reader_study.power import PowerStatement
from migros.settings import StageSettings

log = logging.getLogger(__name__)

GAN_KINDS = ("gan", "stylegan3")  # config `methods` kinds that train a GAN (common.smk: GAN_KINDS)
PAPER_KIND = "selora"  # the paper compares its best SeLoRA with the GAN
PAIRINGS = ("paper", "all_pairs")
CALIBRATION_SPLIT = "test"  # real slices no method was adapted on, so a memorised training slice is not primed
ALPHA = round(1 - INTERVAL_CONFIDENCE, 6)  # of the exact test whose power the pack states


@dataclass(frozen=True)
class PowerGoal:
    preference: float  # the true preference for one method that the study must be able to detect
    power: float  # chance of detecting it with one reader's exact test on one class's pairs


@dataclass(frozen=True)
class PackSettings(StageSettings):
    """The `reader_study` keys that change the pack (not `build`, `methods`, `answers` or the statistics')."""

    SECTION = "reader_study"
    pairing: str  # paper: the best-FID SeLoRA against the best-FID GAN; all_pairs: every pair of the methods
    pairs_per_class: int  # pairs of each class per compared pair of methods
    calibration_per_class: int  # real slices of each class shown before the trials
    image_size: int  # side of every served image, px
    seed: int  # which images are drawn; each reader's order and sides
    question: str  # shown above every pair
    power_goal: PowerGoal


def choose_comparisons(pairing: str, kinds: dict[str, str | None], fids: dict[str, float]) -> list[tuple[str, str]]:
    """The pairs of methods readers compare, each (A, B) with A the method whose preference share is reported.

    paper: the SeLoRA method with the lowest (best) FID against the GAN with the lowest FID; all_pairs: every pair
    of `kinds`' methods, in their order. `kinds` maps each candidate method to its config kind."""
    if pairing == "paper":
        seloras = [method for method, kind in kinds.items() if kind == PAPER_KIND]
        gans = [method for method, kind in kinds.items() if kind in GAN_KINDS]
        if not seloras or not gans:
            raise PackError(f"pairing 'paper' needs a selora method and a GAN ({', '.join(GAN_KINDS)}) among the "
                            f"candidates {sorted(kinds)}; list them in reader_study.methods or use all_pairs")
        return [(min(seloras, key=fids.__getitem__), min(gans, key=fids.__getitem__))]
    if pairing == "all_pairs":
        if len(kinds) < 2:
            raise PackError(f"pairing 'all_pairs' needs at least two methods, got {sorted(kinds)}")
        return list(itertools.combinations(kinds, 2))
    raise PackError(f"unknown pairing {pairing!r}; known: {PAIRINGS}")


def draw_items(
    manifests: dict[str, pd.DataFrame], comparisons: list[tuple[str, str]], pairs_per_class: int,
    generator: np.random.Generator,
) -> pd.DataFrame:
    """Two rows per item (one per image): item, comparison, class, method, source; `pairs_per_class` items per
    comparison and class, each image drawn once. Items are numbered in random order."""
    pools = {
        (method, label): list(generator.permutation(manifest.file[manifest.label == label].to_numpy()))
        for method, manifest in manifests.items() for label in CLASS_NAMES
    }
    rows = []
    for index, (comparison, label) in enumerate(itertools.product(range(len(comparisons)), CLASS_NAMES)):
        for method in comparisons[comparison]:
            pool = pools[method, label]
            if len(pool) < pairs_per_class:
                raise PackError(
                    f"{method} has {len(pool)} unused {CLASS_NAMES[label]} images left for "
                    f"{comparisons[comparison]}, fewer than reader_study.pairs_per_class = {pairs_per_class} (each "
                    "image is shown once): lower pairs_per_class, compare fewer pairs or generate more images")
            for pair in range(pairs_per_class):
                rows.append({"slot": index * pairs_per_class + pair, "comparison": comparison,
                             "class": CLASS_NAMES[label], "method": method, "source": str(pool.pop())})
    items = pd.DataFrame(rows)
    numbering = generator.permutation(items.slot.max() + 1)
    return items.assign(item=numbering[items.slot]).drop(columns="slot").sort_values(["item", "comparison"],
                                                                                   kind="stable")


def draw_calibration(metadata: pd.DataFrame, per_class: int, generator: np.random.Generator) -> pd.DataFrame:
    """`per_class` real slices of each class from the test split: class, source."""
    rows = []
    for label, name in CLASS_NAMES.items():
        available = metadata.image[(metadata.split == CALIBRATION_SPLIT) & (metadata.label == label)].to_numpy()
        if len(available) < per_class:
            raise PackError(f"the {CALIBRATION_SPLIT} split has {len(available)} {name} slices, fewer than "
                            f"reader_study.calibration_per_class = {per_class}")
        rows += [{"class": name, "source": str(path)} for path in generator.choice(available, per_class, replace=False)]
    return pd.DataFrame(rows, columns=["class", "source"])


def reencoded_png(source: str | Path, size: int) -> bytes:
    """The image as an 8-bit grayscale PNG of size x size px with only the IHDR, IDAT and IEND chunks.

    Grayscale, because the methods' colour handling differs (RGB from the diffusion model, one channel from a GAN)
    and would tell them apart; a new image from the pixels alone, so no text, time or gamma chunk is carried over.
    """
    with open_image(source, "L").resize((size, size), Image.Resampling.LANCZOS) as resized:
        pixels = np.asarray(resized)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def new_token(avoid: tuple[str, ...]) -> str:
    """A random image token that contains none of the words in `avoid` (method names), not even by chance."""
    while True:
        token = secrets.token_urlsafe(16)
        if not any(word.lower() in token.lower() for word in avoid):
            return token


def keyed_items(trials: pd.DataFrame, comparisons: list[tuple[str, str]]) -> list[dict]:
    """Each item's comparison, class and tokens in the comparison's order (token_a: its first method's image)."""
    keyed = []
    for item, group in trials.groupby("item"):
        comparison = int(group.comparison.iloc[0])
        tokens = group.set_index("method").token
        method_a, method_b = comparisons[comparison]
        keyed.append({"item": int(item), "comparison": comparison, "class": group["class"].iloc[0],
                      "token_a": tokens[method_a], "token_b": tokens[method_b]})
    return keyed


def build_pack(
    dataset: str,
    kinds: dict[str, str | None],
    manifest_csvs: dict[str, Path],
    fid_csvs: dict[str, Path],
    metadata_csv: Path,
    settings: PackSettings,
    out_dir: Path,
) -> dict:
    """Write the pack of `dataset` to `out_dir` and return its study.json content.

    `kinds` maps each candidate method to its config kind, `manifest_csvs` and `fid_csvs` give its generated set
    and its FID scores (tidy rows; metric `fid` is read)."""
    fids = {method: float(pd.read_csv(path).set_index("metric").value["fid"]) for method, path in fid_csvs.items()}
    comparisons = choose_comparisons(settings.pairing, kinds, fids)
    compared = list(dict.fromkeys(method for pair in comparisons for method in pair))
    generator = np.random.default_rng(settings.seed)
    items = draw_items({method: pd.read_csv(manifest_csvs[method]) for method in compared}, comparisons,
                       settings.pairs_per_class, generator)
    calibration = draw_calibration(pd.read_csv(metadata_csv), settings.calibration_per_class, generator)
    avoid = tuple(dict.fromkeys([*kinds, *filter(None, kinds.values())]))
    images = pd.concat([items.assign(role=TRIAL), calibration.assign(role=CALIBRATION, method=REAL)],
                       ignore_index=True)
    images["token"] = [new_token(avoid) for _ in range(len(images))]
    if images.token.duplicated().any():  # 128 random bits: would mean a broken random source
        raise PackError("two images drew the same token")

    (out_dir / IMAGES).mkdir(parents=True)
    for token, source in zip(images.token, images.source):
        (out_dir / IMAGES / f"{token}.png").write_bytes(reencoded_png(source, settings.image_size))

    power = PowerStatement.of(settings.pairs_per_class, len(CLASS_NAMES), settings.power_goal.preference,
                              settings.power_goal.power, ALPHA)
    (log.info if power.meets_goal else log.warning)("%s: %s", dataset, power.summary())
    pack_id = secrets.token_hex(8)
    trials = images[images.role == TRIAL]
    study = {
        "format": FORMAT,
        "pack_id": pack_id,
        "dataset": dataset,
        "question": settings.question,
        "image_size": settings.image_size,
        "seed": settings.seed,
        "calibration": {name: images.token[(images.role == CALIBRATION) & (images["class"] == name)].tolist()
                        for name in CLASS_NAMES.values()},
        # the two tokens of an item in random order: which method comes first is in the key only
        "items": [{"item": int(item), "class": group["class"].iloc[0],
                   "tokens": list(generator.permutation(group.token.to_numpy()))}
                  for item, group in trials.groupby("item")],
        "power": power.as_dict(),
    }
    key = {
        "pack_id": pack_id,
        "pairing": settings.pairing,
        "comparisons": [list(pair) for pair in comparisons],
        "fid": fids,
        "items": keyed_items(trials, comparisons),
        "images": images[["token", "role", "class", "method", "source"]].to_dict("records"),
    }
    (out_dir / STUDY_JSON).write_text(json.dumps(study, indent=1))
    (out_dir / KEY_JSON).write_text(json.dumps(key, indent=1))
    log.info("%s: %d items (%s), %d calibration slices, %d images", dataset, len(study["items"]),
             "; ".join(f"{a} vs {b}" for a, b in comparisons), len(calibration), len(images))
    return study
