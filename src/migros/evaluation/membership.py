"""Membership-inference audit: can an attacker tell the real slices a method was trained on from unseen ones?

Members are the real training slices the method was adapted on (train_prompts.csv); non-members are real test
slices, with prompts built by the same function and the dataset's prompt settings. Per class the larger side is
subsampled (seeded, independent of the method) to the smaller side's count, so both sides have the same number
of images and the same class balance, and every method of a dataset is audited on exactly the same images. A
test slice among the members, or a patient on both sides, would void the audit and is an error.

Attacks (scores, higher = "member"; `membership_settings.ATTACKS`):
- loss: minus the adapted model's noise-prediction loss. The loss of an image is the mean squared error of the
  UNet's noise prediction, averaged over `timesteps` x `noise_draws`, on the VAE posterior MEAN of the image
  (deterministic) times the scaling factor, with the image's own prompt.
- loss_difference: the base model's loss minus the adapted model's, on the same image and the same noise: it
  removes how hard an image is for any model (calibration against the pre-trained model), so it is the stronger
  test of what the adaptation added.
- distance: minus the L2 distance (grayscale pixels in [0, 1] at the dataset's image size) of the image to its
  nearest image in the method's raw generated set: GAN-Leaks' "full black-box" attack (Chen et al., CCS 2020).
  It needs only samples, so it is the attack that fits a model without a denoising loss (the GAN baselines) and
  it audits what is actually released, the synthetic images.

Noise. The noise of image i (position i among the members, or among the non-members), draw d, is drawn from a
generator seeded by (seed, role, i, d), one (timesteps, 4, h, w) tensor per draw, and nothing else draws from it.
The selection does not depend on the method, so every method, and the base model, sees exactly the same noise
for the same image: differences between models are not differences between draws.

Metrics per attack: ROC AUC and the TPR at 1 % and at 10 % FPR (the largest TPR of the ROC curve with FPR at or
below the target: with n non-members the smallest FPR above 0 is 1/n, so at n < 100 "1 % FPR" is FPR 0), with
percentile bootstrap 95 % intervals (members and non-members resampled independently). An AUC of 0.5 means the
attack cannot tell members from non-members; no_adaptation (the base model never saw the training slices)
gives that reference up to noise. For no_adaptation the loss difference is identically 0 (no rows, logged); for
the GANs the loss attacks do not apply (no rows; the report says "not applicable: no denoising loss").

Outputs: tidy rows (`statistics.TIDY_COLUMNS`, n = members + non-members) and a per-image scores table (image,
role, label, loss_adapted, loss_base, min_distance).
"""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from migros.evaluation.membership_settings import (
    ATTACKS, FPR_TARGETS, MEMBER, NO_DENOISING_LOSS_KINDS, NON_MEMBER, STATISTICS, AuditSettings,
    metric_name,
)
from migros.evaluation.statistics import INTERVAL_CONFIDENCE, TIDY_COLUMNS, bootstrap_percentiles, bootstrap_values
from migros.images import open_image
from migros.prompts import PromptSettings, split_prompts

log = logging.getLogger(__name__)

__all__ = ["AuditSettings", "ATTACKS"]
ROLE_CODES = {MEMBER: 0, NON_MEMBER: 1}
SCORE_COLUMNS = ["image", "role", "label", "loss_adapted", "loss_base", "min_distance"]
DISTANCE_CHUNK = 256  # audited images per block of the distance matrix


class AuditError(ValueError):
    """Members and non-members that would make the audit meaningless."""


# --- members and non-members ---------------------------------------------------------------------------------


def test_split_prompts(metadata: pd.DataFrame, prompts: PromptSettings) -> pd.DataFrame:
    """The real test slices with prompts built exactly as the training prompts are: image, prompt, label."""
    return split_prompts(metadata, prompts, split="test")[["image", "prompt", "label"]]


def select_members(
    members: pd.DataFrame, metadata: pd.DataFrame, prompts: PromptSettings, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(members, non-members), each with image, prompt, label, of equal size and class balance.

    `members`: the method's training prompts (train_prompts.csv). Per label the side with more images keeps a
    seeded random subset of the other side's count, in its original order. Raises AuditError when a member is
    not a training slice of `metadata` or when a patient (case) has slices on both sides.
    """
    members = members[["image", "prompt", "label"]].reset_index(drop=True)
    split_of = dict(zip(metadata.image, metadata.split))
    if wrong := [image for image in members.image if split_of.get(image) != "train"]:
        raise AuditError(f"{len(wrong)} member image(s) are not training slices of the slice metadata (e.g. "
                         f"{wrong[0]}, split {split_of.get(wrong[0])!r}): the audit would be void")
    non_members = test_split_prompts(metadata, prompts).reset_index(drop=True)
    if "case" in metadata:
        case_of = dict(zip(metadata.image, metadata.case))
        if shared := sorted({case_of[image] for image in members.image} & {case_of[i] for i in non_members.image}):
            raise AuditError(f"patient(s) {shared[:5]} have slices among the members and the non-members")
    generator = np.random.default_rng(seed)
    chosen = {MEMBER: [], NON_MEMBER: []}
    for label in sorted(set(members.label) | set(non_members.label)):
        sides = {MEMBER: members.index[members.label == label], NON_MEMBER: non_members.index[non_members.label == label]}
        count = min(len(rows) for rows in sides.values())
        for role, rows in sides.items():
            chosen[role] += sorted(generator.choice(rows, size=count, replace=False).tolist())
    return members.loc[sorted(chosen[MEMBER])].reset_index(drop=True), \
        non_members.loc[sorted(chosen[NON_MEMBER])].reset_index(drop=True)


# --- attack scores ---------------------------------------------------------------------------------------------


def noise_seed(seed: int, role: str, index: int, draw: int) -> int:
    """A 63-bit seed of one noise draw of one image, from (seed, role, position within the role, draw)."""
    return int(np.random.SeedSequence([seed, ROLE_CODES[role], index, draw]).generate_state(2, np.uint64)[0] >> 1)


def denoising_losses(pipeline, images, prompts: list[str], role: str, settings: AuditSettings) -> np.ndarray:
    """Per image, the noise-prediction MSE averaged over `settings.timesteps` x `settings.noise_draws`, in fp32.

    `images`: (n, 3, h, w) in [-1, 1] (`finetune.load_images`), image i being position i of `role`, which picks
    its noise (see the module docstring). Latents are the VAE posterior mean times the scaling factor.
    """
    import torch

    from migros.diffusion.finetune import encode_latent_distribution, encode_prompts

    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    if bad := [t for t in settings.timesteps if not 0 <= t < num_train_timesteps]:
        raise ValueError(f"privacy_audit.timesteps {bad} lie outside the scheduler's 0..{num_train_timesteps - 1}")
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    device = pipeline.unet.device
    timesteps = torch.tensor(settings.timesteps, dtype=torch.long)
    losses = np.empty(len(images))
    with torch.no_grad():
        latent_mean, _ = encode_latent_distribution(pipeline, images, settings.batch_size)
        latents_all = latent_mean * pipeline.vae.config.scaling_factor
        token_ids = encode_prompts(pipeline, prompts)
        for start in tqdm(range(0, len(images), settings.batch_size), desc=f"losses ({role})", unit="batch"):
            batch = range(start, min(start + settings.batch_size, len(images)))
            latents = latents_all[start : batch.stop]
            hidden = pipeline.text_encoder(token_ids[start : batch.stop].to(device))[0].float()
            total = torch.zeros(len(batch), dtype=torch.float64)
            for draw in range(settings.noise_draws):
                noise = torch.stack([  # (batch, timesteps, c, h, w), each image's from its own generator
                    torch.randn((len(timesteps), *latents.shape[1:]),
                                generator=torch.Generator().manual_seed(noise_seed(settings.seed, role, index, draw)))
                    for index in batch
                ])
                for position, timestep in enumerate(timesteps):
                    step = timestep.repeat(len(batch))
                    noisy = scheduler.add_noise(latents.cpu(), noise[:, position], step)
                    prediction = pipeline.unet(noisy.to(device, pipeline.unet.dtype), step.to(device),
                                               encoder_hidden_states=hidden.to(pipeline.unet.dtype)).sample
                    error = (prediction.float().cpu() - noise[:, position]) ** 2
                    total += error.flatten(1).mean(1).double()
            losses[start : batch.stop] = (total / (settings.noise_draws * len(timesteps))).numpy()
    return losses


def gray_images(paths, size: int) -> np.ndarray:
    """(n, size, size) float32 grayscale in [0, 1], resized (bicubic) where an image has another size."""
    from PIL import Image

    stack = np.empty((len(paths), size, size), np.float32)
    for index, path in enumerate(paths):
        image = open_image(path, "L")
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        stack[index] = np.asarray(image, np.float32) / 255.0
    return stack


def nearest_distances(queries: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """For each query image, the L2 distance (pixels flattened) to its nearest generated image."""
    if not len(generated):
        raise ValueError("the distance attack needs at least one generated image")
    references = generated.reshape(len(generated), -1).astype(np.float64)
    reference_norms = (references**2).sum(1)
    flat = queries.reshape(len(queries), -1).astype(np.float64)
    nearest = np.empty(len(queries))
    for start in range(0, len(flat), DISTANCE_CHUNK):
        block = flat[start : start + DISTANCE_CHUNK]
        squared = (block**2).sum(1)[:, None] + reference_norms[None] - 2 * block @ references.T
        nearest[start : start + len(block)] = np.sqrt(np.clip(squared.min(1), 0, None))
    return nearest


def attack_scores(scores: pd.DataFrame, attack: str) -> pd.Series:
    """The attack's score of every image of a scores table (higher = "member")."""
    if attack == "loss":
        return -scores.loss_adapted
    if attack == "loss_difference":
        return scores.loss_base - scores.loss_adapted
    if attack == "distance":
        return -scores.min_distance
    raise ValueError(f"unknown attack {attack!r}; the attacks are {ATTACKS}")


# --- metrics ---------------------------------------------------------------------------------------------------


def roc_auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """ROC AUC of "member" scores: the share of (member, non-member) pairs a member wins, ties counting half.

    Equal to sklearn's roc_auc_score (tested), but about 100 times faster on a few hundred scores, which the
    bootstrap's thousands of resamples need.
    """
    members, non_members = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    wins = (members[:, None] > non_members[None]).mean()
    return float(wins + 0.5 * (members[:, None] == non_members[None]).mean())


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray, target: float) -> float:
    """The largest true-positive rate at a threshold whose false-positive rate is at most `target`.

    At most k = ⌊target × n⌋ non-members may score at or above the threshold, so the members that count are
    those above the (k+1)-th highest non-member score (the value read off sklearn's roc_curve; tested).
    """
    members, non_members = np.asarray(member_scores, float), np.sort(np.asarray(non_member_scores, float))[::-1]
    allowed = int(np.floor(target * len(non_members) + 1e-9))
    if allowed >= len(non_members):
        return 1.0
    return float((members > non_members[allowed]).mean())


def statistic_function(statistic: str):
    if statistic == "auc":
        return roc_auc
    target = FPR_TARGETS[statistic]
    return lambda members, non_members: tpr_at_fpr(members, non_members, target)


def attack_rows(dataset: str, method: str, attack: str, member_scores, non_member_scores, resamples: int,
                seed: int) -> list[dict]:
    """Tidy rows of one attack: AUC, TPR at 1 % and 10 % FPR, each with its percentile bootstrap interval."""
    members, non_members = np.asarray(member_scores, float), np.asarray(non_member_scores, float)
    rows = []
    for statistic in STATISTICS:
        function = statistic_function(statistic)
        lower = upper = np.nan
        if resamples:
            values = bootstrap_values(function, (members, non_members), resamples, seed)
            lower, _, upper = bootstrap_percentiles(values, INTERVAL_CONFIDENCE)
        rows.append({"dataset": dataset, "method": method, "metric": metric_name(attack, statistic),
                     "value": function(members, non_members), "lower": lower, "upper": upper,
                     "n": len(members) + len(non_members)})
    return rows


def audit_rows(scores: pd.DataFrame, dataset: str, method: str, attacks: list[str], settings: AuditSettings) -> pd.DataFrame:
    """The tidy rows of `attacks` on a scores table (SCORE_COLUMNS)."""
    rows = []
    for attack in attacks:
        values = attack_scores(scores, attack)
        rows += attack_rows(dataset, method, attack, values[scores.role == MEMBER], values[scores.role == NON_MEMBER],
                            settings.bootstrap_resamples, settings.seed)
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


# --- the stage -------------------------------------------------------------------------------------------------


def applicable_attacks(method: str, kind: str | None) -> list[str]:
    """The attacks that mean something for a method: `kind` is its config kind (None for no_adaptation)."""
    if kind in NO_DENOISING_LOSS_KINDS:
        return ["distance"]
    if kind is None:  # the base model: adapted = base, the difference is 0 for every image
        return ["loss", "distance"]
    return list(ATTACKS)


def model_losses(base_model_dir: Path, adapter_dir: Path | None, audited: pd.DataFrame, image_size: int,
                 settings: AuditSettings) -> tuple[np.ndarray, np.ndarray]:
    """(base losses, adapted losses) of the audited images (rows in member, then non-member order)."""
    from migros.devices import default_device
    from migros.diffusion.base_model import load_prepared_base_model
    from migros.diffusion.finetune import load_images
    from migros.diffusion.probe import check_reload

    pipeline = load_prepared_base_model(base_model_dir, device=default_device())  # fp32
    pipeline.set_progress_bar_config(disable=True)

    def losses() -> np.ndarray:
        parts = []
        for role in (MEMBER, NON_MEMBER):
            rows = audited[audited.role == role]
            images = load_images(rows.image.tolist(), image_size)
            parts.append(denoising_losses(pipeline, images, rows.prompt.tolist(), role, settings))
        return np.concatenate(parts)

    base = losses()
    if adapter_dir is None:
        return base, base.copy()
    pipeline.load_lora_weights(adapter_dir)
    check_reload(pipeline, adapter_dir)
    return base, losses()


def run_audit_stage(
    base_model_dir: Path | None,
    adapter_dir: Path | None,
    train_prompts_csv: Path,
    metadata_csv: Path,
    manifest_csv: Path,
    prompt_settings: PromptSettings,
    settings: AuditSettings,
    image_size: int,
    dataset: str,
    method: str,
    kind: str | None,
    metrics_csv: Path,
    scores_csv: Path,
    proxy_non_members_csv: Path | None = None,
) -> None:
    """Everything the `privacy_audit` rule does for one dataset x method.

    `kind`: the method's config kind, None for no_adaptation; `adapter_dir` for the adapter methods only;
    `base_model_dir` is not read for the GAN kinds; `proxy_non_members_csv` for a method with a privacy defence,
    whose proxy attack model must not have seen a test slice.
    """
    metadata = pd.read_csv(metadata_csv)
    if proxy_non_members_csv is not None:
        from migros.diffusion.privacy_defence import check_separation

        check_separation(pd.read_csv(proxy_non_members_csv).image.tolist(),
                         metadata.image[metadata.split == "test"].tolist())
    members, non_members = select_members(pd.read_csv(train_prompts_csv), metadata, prompt_settings, settings.seed)
    audited = pd.concat([members.assign(role=MEMBER), non_members.assign(role=NON_MEMBER)], ignore_index=True)
    log.info("%s / %s: %d members and %d non-members (labels %s)", dataset, method, len(members), len(non_members),
             members.label.value_counts().to_dict())
    attacks = applicable_attacks(method, kind)
    scores = audited[["image", "role", "label"]].copy()
    scores["loss_adapted"] = scores["loss_base"] = np.nan
    if "loss" in attacks:
        scores["loss_base"], scores["loss_adapted"] = model_losses(base_model_dir, adapter_dir, audited, image_size,
                                                                   settings)
    else:
        log.info("%s: loss attacks not applicable (kind %s has no denoising loss); distance attack only", method, kind)
    if kind is None:
        log.info("%s: the loss-difference attack is identically 0 for the base model; no rows written", method)
    generated = pd.read_csv(manifest_csv)
    scores["min_distance"] = nearest_distances(gray_images(scores.image, image_size),
                                               gray_images(generated.file, image_size))
    rows = audit_rows(scores, dataset, method, attacks, settings)
    for row in rows[rows.metric.str.endswith("_auc")].itertuples():
        log.info("%s %s: %.3f [%.3f, %.3f]", method, row.metric, row.value, row.lower, row.upper)
    Path(metrics_csv).parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(metrics_csv, index=False)
    scores[SCORE_COLUMNS].to_csv(scores_csv, index=False)
