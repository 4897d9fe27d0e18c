"""The audit's learned membership-inference attack: an MLP on the adapted model's per-element loss maps.

Stable PrivateLoRA's proxy (`migros.diffusion.privacy_defence`) is such an attack, and its paper audits with one
besides loss thresholds (Luo et al. 2024): a defence trained against a learned attack is only shown to work by a
learned attack, since it may hide the mean loss a threshold reads and leave a pattern an MLP still reads. The
attack here is the audit's own, trained afresh on every method alike, never the defence's proxy.

Features: per image, the squared error of the noise prediction at every latent element, averaged over the noise
draws of each timestep and average-pooled to `map_size` x `map_size` (`membership.denoising_losses` computes them
in the passes that also give the loss attacks their numbers), log-transformed (squared errors are skewed: the
log makes a relative change of the error a shift of the input) and standardised with the training set's mean
and spread.

Training data, as the reference splits it: members against auxiliary non-members, slices of cases in neither
the train nor the test split. The audit's non-members (test slices) are never trained on, and neither is the
member being scored: members are split into `folds` folds (per class), the MLP of fold k is trained on the
members of the other folds and all auxiliary slices, and scores the members of fold k and the non-members of
fold k (non-members are split the same way, so both sides are scored by the same mixture of MLPs).
"""

import numpy as np
import torch
import torch.nn.functional as F

from migros.diffusion.privacy_defence import ProxyAttack
from migros.evaluation.membership_settings import LearnedAttackSettings

# A floor under the squared errors before the log: far below any error an fp32 noise prediction makes
LOG_FLOOR = 1e-12
# Draws of the folds and of the MLPs' weights: a stream of the audit's seed apart from the noise and the subsampling
LEARNED_ATTACK_STREAM = 2


def pooled_loss_map(squared_errors: torch.Tensor, map_size: int) -> torch.Tensor:
    """(batch, channels, h, w) squared errors → (batch, channels, s, s) averages over blocks, s = min(map_size, h)."""
    return F.adaptive_avg_pool2d(squared_errors, min(map_size, squared_errors.shape[-1]))


def stratified_folds(labels: np.ndarray, folds: int, generator: np.random.Generator) -> np.ndarray:
    """A fold per image: within each class a seeded permutation dealt round-robin, so every fold keeps the
    class balance."""
    assignment = np.empty(len(labels), int)
    for label in np.unique(labels):
        rows = generator.permutation(np.flatnonzero(labels == label))
        assignment[rows] = np.arange(len(rows)) % folds
    return assignment


def features(loss_maps: np.ndarray) -> torch.Tensor:
    """(n, ...) loss maps → (n, d) log squared errors."""
    return torch.from_numpy(np.log(np.maximum(loss_maps.reshape(len(loss_maps), -1), LOG_FLOOR))).float()


def train_attack(members: torch.Tensor, non_members: torch.Tensor, settings: LearnedAttackSettings, seed: int):
    """An MLP trained with full-batch Adam to tell `members` (label 1) from `non_members` (label 0), features as
    `features` gives them; returns a function of features → logits (higher = "member"), in eval mode."""
    inputs = torch.cat([members, non_members])
    labels = torch.cat([torch.ones(len(members)), torch.zeros(len(non_members))])
    centre, spread = inputs.mean(0), inputs.std(0).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):  # initial weights and dropout leave every other draw alone
        torch.manual_seed(seed)
        network = ProxyAttack(inputs.shape[1], settings.hidden, settings.dropout)
        optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate,
                                     weight_decay=settings.weight_decay)
        standardised = (inputs - centre) / spread
        for _ in range(settings.steps):
            loss = F.binary_cross_entropy_with_logits(network(standardised), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    network.eval()

    def logits(queries: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return network((queries - centre) / spread).numpy().astype(float)

    return logits


def learned_attack_scores(
    member_maps: np.ndarray, member_labels: np.ndarray, non_member_maps: np.ndarray, non_member_labels: np.ndarray,
    auxiliary_maps: np.ndarray, settings: LearnedAttackSettings, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(member scores, non-member scores), cross-fitted over `settings.folds` folds (module docstring).

    Maps: (n, timesteps, channels, s, s) loss maps of the adapted model; labels: each image's class (healthy /
    tumour), which keeps the folds balanced.
    """
    if len(member_maps) < settings.folds:
        raise ValueError(f"privacy_audit.learned_attack.folds is {settings.folds}, more than the {len(member_maps)} "
                         "audited members")
    generator = np.random.default_rng([seed, LEARNED_ATTACK_STREAM])
    member_fold = stratified_folds(member_labels, settings.folds, generator)
    non_member_fold = stratified_folds(non_member_labels, settings.folds, generator)
    members, non_members, auxiliary = features(member_maps), features(non_member_maps), features(auxiliary_maps)
    member_scores, non_member_scores = np.empty(len(members)), np.empty(len(non_members))
    for fold in range(settings.folds):
        fold_seed = np.random.SeedSequence([seed, LEARNED_ATTACK_STREAM, fold]).generate_state(1, np.uint64)[0]
        attack = train_attack(members[member_fold != fold], auxiliary, settings, int(fold_seed >> 1))
        member_scores[member_fold == fold] = attack(members[member_fold == fold])
        non_member_scores[non_member_fold == fold] = attack(non_members[non_member_fold == fold])
    return member_scores, non_member_scores
