"""Membership-inference audit: can an attacker tell the real slices a method was trained on from unseen ones?

Members are the real training slices the method was adapted on (train_prompts.csv); non-members are real test
slices, with prompts built by the same function and the dataset's prompt settings. Per class the larger side is
subsampled (seeded, independent of the method) to the smaller side's count, so both sides have the same number
of images and the same class balance, and every method of a dataset is audited on exactly the same images. A
test slice among the members, or a patient on both sides, would void the audit and is an error (by patient, not
by case: a PI-CAI patient can have several studies).

Attacks (scores, higher = "member"; `membership_settings.ATTACKS`):
- loss: minus the adapted model's noise-prediction loss. The loss of an image is the mean squared error of the
  UNet's noise prediction, averaged over `timesteps` x `noise_draws`, on the VAE posterior MEAN of the image
  (deterministic) times the scaling factor, with the image's own prompt.
- loss_difference: the base model's loss minus the adapted model's, on the same image and the same noise: it
  removes how hard an image is for any model (calibration against the pre-trained model), so it is the stronger
  test of what the adaptation added.
- learned: an MLP's logit on the adapted model's per-element loss maps, from the same UNet passes
  (`learned_attack`): the attack Stable PrivateLoRA defends against. It trains on members against auxiliary
  non-members, slices of cases in neither split (rule proxy_non_members), per class at most as many as there are
  audited members, which pass through the audited model only (a quarter more UNet passes for an adapter, half
  more for no_adaptation); cross-fitting keeps every scored member out of the MLP that scores it.
- distance: minus the L2 distance (grayscale pixels in [0, 1] at the dataset's image size) of the image to its
  nearest image in the method's raw generated set: GAN-Leaks' "full black-box" attack (Chen et al., CCS 2020).
  It needs only samples, so it is the attack that fits a model without a denoising loss (the GAN baselines) and
  it audits what is actually released, the synthetic images.

Noise. The noise of image i (position i among the members, the non-members or the auxiliary slices), draw d, is
drawn from a generator seeded by (seed, role, i, d), one (timesteps, 4, h, w) tensor per draw, and nothing else
draws from it. The selection does not depend on the method, so every method, and the base model, sees exactly the
same noise for the same image: differences between models are not differences between draws.

Metrics per attack: ROC AUC, the TPR at the lowest FPR the sample shows and at 10 % FPR (the largest TPR of the
ROC curve with FPR at or below the target; with n non-members the lowest FPR above 0 is 1/n, one non-member
above the threshold: a "1 % FPR" on the 30-40 non-members of the default would be FPR 0), with percentile
bootstrap 95 % intervals (members and non-members resampled independently; for the learned attack the
intervals hold its MLPs fixed, so they leave out how its training varies). An AUC of 0.5 means the
attack cannot tell members from non-members; no_adaptation (the base model never saw the training slices)
gives that reference up to noise. For no_adaptation the loss difference is identically 0 (no rows, logged); for
the GANs the loss attacks do not apply (no rows; the report says "not applicable: no denoising loss").

Outputs: tidy rows (`statistics.TIDY_COLUMNS`, n = members + non-members) and a per-image scores table (image,
role, label, loss_adapted, loss_base, learned_score, min_distance).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from migros.evaluation.membership_settings import (
    ATTACKS, AUXILIARY, MEMBER, NO_DENOISING_LOSS_KINDS, NON_MEMBER, STATISTICS, TPR_AT_10PCT_FPR, TPR_AT_LOWEST_FPR,
    AuditSettings, lowest_fpr, metric_name,
)
from migros.evaluation.statistics import INTERVAL_CONFIDENCE, TIDY_COLUMNS, bootstrap_percentiles, bootstrap_values
from migros.images import open_image
from migros.prompts import PromptSettings, split_prompts

log = logging.getLogger(__name__)

__all__ = ["AuditSettings", "ATTACKS"]
ROLE_CODES = {MEMBER: 0, NON_MEMBER: 1, AUXILIARY: 2}
SCORE_COLUMNS = ["image", "role", "label", "loss_adapted", "loss_base", "learned_score", "min_distance"]
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
    not a training slice of `metadata` or when a patient has slices on both sides (a PI-CAI patient can have
    several studies, each its own case: the check is by patient, not by case).
    """
    members = members[["image", "prompt", "label"]].reset_index(drop=True)
    split_of = dict(zip(metadata.image, metadata.split))
    if wrong := [image for image in members.image if split_of.get(image) != "train"]:
        raise AuditError(f"{len(wrong)} member image(s) are not training slices of the slice metadata (e.g. "
                         f"{wrong[0]}, split {split_of.get(wrong[0])!r}): the audit would be void")
    non_members = test_split_prompts(metadata, prompts).reset_index(drop=True)
    patient_of = dict(zip(metadata.image, metadata.patient))
    if shared := sorted({patient_of[image] for image in members.image} & {patient_of[i] for i in non_members.image}):
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


def denoising_losses(pipeline, images, prompts: list[str], role: str, settings: AuditSettings
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(losses, loss maps) of each image, in fp32.

    Loss: the noise-prediction MSE averaged over `settings.timesteps` x `settings.noise_draws`. Loss map: the
    squared error at every latent element averaged over the draws, per timestep, pooled to
    `learned_attack.map_size` (the learned attack's input), shape (n, timesteps, channels, s, s).
    `images`: (n, 3, h, w) in [-1, 1] (`finetune.load_images`), image i being position i of `role`, which picks
    its noise (see the module docstring). Latents are the VAE posterior mean times the scaling factor.
    """
    import torch

    from migros.diffusion.finetune import encode_latent_distribution, encode_prompts
    from migros.evaluation.learned_attack import pooled_loss_map

    num_train_timesteps = pipeline.scheduler.config.num_train_timesteps
    if bad := [t for t in settings.timesteps if not 0 <= t < num_train_timesteps]:
        raise ValueError(f"privacy_audit.timesteps {bad} lie outside the scheduler's 0..{num_train_timesteps - 1}")
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
    device = pipeline.unet.device
    timesteps = torch.tensor(settings.timesteps, dtype=torch.long)
    losses, maps = np.empty(len(images)), []
    with torch.no_grad():
        latent_mean, _ = encode_latent_distribution(pipeline, images, settings.batch_size)
        latents_all = latent_mean * pipeline.vae.config.scaling_factor
        token_ids = encode_prompts(pipeline, prompts)
        for start in tqdm(range(0, len(images), settings.batch_size), desc=f"losses ({role})", unit="batch"):
            batch = range(start, min(start + settings.batch_size, len(images)))
            latents = latents_all[start : batch.stop]
            hidden = pipeline.text_encoder(token_ids[start : batch.stop].to(device))[0].float()
            total = torch.zeros(len(batch), dtype=torch.float64)
            map_sums = [0.0] * len(timesteps)
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
                    map_sums[position] = map_sums[position] + pooled_loss_map(error, settings.learned_attack.map_size)
            losses[start : batch.stop] = (total / (settings.noise_draws * len(timesteps))).numpy()
            maps.append((torch.stack(map_sums, 1) / settings.noise_draws).numpy())
    return losses, np.concatenate(maps)


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
    if attack == "learned":
        return scores.learned_score
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
    """statistic(member scores, non-member scores) of a name in STATISTICS."""
    if statistic == "auc":
        return roc_auc
    if statistic == TPR_AT_LOWEST_FPR:
        return lambda members, non_members: tpr_at_fpr(members, non_members, lowest_fpr(len(non_members)))
    if statistic == TPR_AT_10PCT_FPR:
        return lambda members, non_members: tpr_at_fpr(members, non_members, 0.10)
    raise ValueError(f"unknown statistic {statistic!r}; the statistics are {STATISTICS}")


def attack_rows(dataset: str, method: str, attack: str, member_scores, non_member_scores, resamples: int,
                seed: int) -> list[dict]:
    """Tidy rows of one attack: AUC, TPR at the lowest FPR the non-members show (1/n) and at 10 % FPR, each with
    its percentile bootstrap interval."""
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
        return ["loss", "learned", "distance"]
    return list(ATTACKS)


def check_auxiliary(auxiliary: pd.DataFrame, metadata: pd.DataFrame) -> None:
    """Raises AuditError unless every auxiliary non-member is a slice of the `unused` split whose patient has no
    slice in the train or the test split: the learned attack (and a defended method's proxy, which learnt the
    same slices) must not have seen an audited image or an audited patient."""
    from migros.diffusion.privacy_defence import PROXY_SPLIT

    split_of = dict(zip(metadata.image, metadata.split))
    if wrong := [image for image in auxiliary.image if split_of.get(image) != PROXY_SPLIT]:
        raise AuditError(f"{len(wrong)} auxiliary non-member(s) are not {PROXY_SPLIT} slices of the slice metadata "
                         f"(e.g. {wrong[0]}, split {split_of.get(wrong[0])!r}): the audit would be void")
    audited_patients = set(metadata.patient[metadata.split.isin(["train", "test"])])
    patient_of = dict(zip(metadata.image, metadata.patient))
    if shared := sorted({patient_of[image] for image in auxiliary.image} & audited_patients):
        raise AuditError(f"patient(s) {shared[:5]} have auxiliary slices and slices in the train or test split")


def select_auxiliary(auxiliary: pd.DataFrame, members: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The auxiliary non-members the learned attack trains on (image, prompt, label): per class at most as many
    as there are audited members of it (a seeded subset in the original order), which bounds their UNet passes."""
    generator = np.random.default_rng([seed, ROLE_CODES[AUXILIARY]])
    chosen = []
    for label, count in members.label.value_counts().sort_index().items():
        rows = auxiliary.index[auxiliary.label == label]
        chosen += generator.choice(rows, size=min(count, len(rows)), replace=False).tolist()
    return auxiliary.loc[sorted(chosen), ["image", "prompt", "label"]].reset_index(drop=True)


@dataclass(frozen=True)
class ModelLosses:
    """What the UNet passes of one audit give: per audited image (members, then non-members) the base and the
    adapted model's loss and the adapted model's loss maps, and the adapted model's loss maps of the auxiliary
    non-members (`denoising_losses`)."""

    base: np.ndarray
    adapted: np.ndarray
    adapted_maps: np.ndarray
    auxiliary_maps: np.ndarray


def model_losses(base_model_dir: Path, adapter_dir: Path | None, audited: pd.DataFrame, auxiliary: pd.DataFrame,
                 image_size: int, settings: AuditSettings) -> ModelLosses:
    """The losses of the audited images (rows in member, then non-member order) under the base model and the
    adapter at `adapter_dir` (None: the base model is the audited one), and the auxiliary images' loss maps."""
    from migros.devices import default_device
    from migros.diffusion.base_model import load_prepared_base_model
    from migros.diffusion.finetune import load_images
    from migros.diffusion.probe import check_reload

    pipeline = load_prepared_base_model(base_model_dir, device=default_device())  # fp32
    pipeline.set_progress_bar_config(disable=True)

    def passes(parts: list[tuple[str, pd.DataFrame]]) -> tuple[np.ndarray, np.ndarray]:
        results = [denoising_losses(pipeline, load_images(rows.image.tolist(), image_size), rows.prompt.tolist(),
                                    role, settings) for role, rows in parts]
        return np.concatenate([losses for losses, _ in results]), np.concatenate([maps for _, maps in results])

    audited_parts = [(role, audited[audited.role == role]) for role in (MEMBER, NON_MEMBER)]
    base, base_maps = passes(audited_parts)
    if adapter_dir is not None:
        pipeline.load_lora_weights(adapter_dir)
        check_reload(pipeline, adapter_dir)
    adapted, adapted_maps = (base.copy(), base_maps) if adapter_dir is None else passes(audited_parts)
    return ModelLosses(base, adapted, adapted_maps, passes([(AUXILIARY, auxiliary)])[1])


def cross_fitted_learned_scores(scores: pd.DataFrame, losses: ModelLosses, settings: AuditSettings) -> np.ndarray:
    """The learned attack's score of every row of `scores` (members, then non-members, as `losses`)."""
    from migros.evaluation.learned_attack import learned_attack_scores

    member = (scores.role == MEMBER).to_numpy()
    labels = scores.label.to_numpy()
    member_scores, non_member_scores = learned_attack_scores(
        losses.adapted_maps[member], labels[member], losses.adapted_maps[~member], labels[~member],
        losses.auxiliary_maps, settings.learned_attack, settings.seed)
    return np.concatenate([member_scores, non_member_scores])


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
    auxiliary_non_members_csv: Path | None = None,
) -> None:
    """Everything the `privacy_audit` rule does for one dataset x method.

    `kind`: the method's config kind, None for no_adaptation; `adapter_dir` for the adapter methods only;
    `base_model_dir` and `auxiliary_non_members_csv` (rule proxy_non_members: the learned attack's non-members
    to train on, for a defended method also its proxy's) are not read for the GAN kinds.
    """
    metadata = pd.read_csv(metadata_csv)
    attacks = applicable_attacks(method, kind)
    denoising = "loss" in attacks  # the loss attacks and the learned one apply together
    if denoising:  # checked before any model or image is read
        if auxiliary_non_members_csv is None:
            raise ValueError("the learned attack needs auxiliary non-members (rule proxy_non_members)")
        auxiliary = pd.read_csv(auxiliary_non_members_csv)
        check_auxiliary(auxiliary, metadata)
    members, non_members = select_members(pd.read_csv(train_prompts_csv), metadata, prompt_settings, settings.seed)
    audited = pd.concat([members.assign(role=MEMBER), non_members.assign(role=NON_MEMBER)], ignore_index=True)
    log.info("%s / %s: %d members and %d non-members (labels %s)", dataset, method, len(members), len(non_members),
             members.label.value_counts().to_dict())
    scores = audited[["image", "role", "label"]].copy()
    scores["loss_adapted"] = scores["loss_base"] = scores["learned_score"] = np.nan
    if denoising:
        auxiliary = select_auxiliary(auxiliary, members, settings.seed)
        log.info("learned attack: %d auxiliary non-members (labels %s)", len(auxiliary),
                 auxiliary.label.value_counts().to_dict())
        losses = model_losses(base_model_dir, adapter_dir, audited, auxiliary, image_size, settings)
        scores["loss_base"], scores["loss_adapted"] = losses.base, losses.adapted
        scores["learned_score"] = cross_fitted_learned_scores(scores, losses, settings)
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

