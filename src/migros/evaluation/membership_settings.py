"""The membership-inference audit's settings and names, without torch or scikit-learn, so that the report's
environment (tables, figure) can read them; the audit itself is `migros.evaluation.membership`."""

from dataclasses import dataclass

from migros.settings import StageSettings

MEMBER, NON_MEMBER = "member", "non_member"
# Slices of cases in neither split (rule proxy_non_members): the learned attack's non-members to train on, never audited
AUXILIARY = "auxiliary"
# Attacks, each a score per image, higher = "member":
# loss: -L_adapted(x), the adapted model's noise-prediction loss (Yeom et al. 2018's loss threshold attack);
# loss_difference: L_base(x) - L_adapted(x), the loss calibrated against the pre-trained model (Carlini et al.
#   2022, "reference models"; for diffusion, the base model is the natural reference);
# learned: an MLP's logit on the adapted model's per-element loss maps, trained on members against auxiliary
#   non-members: the attack Stable PrivateLoRA's proxy stands for and its paper audits with (Luo et al. 2024);
# distance: -min_j ||x - g_j||_2 over the method's generated images (GAN-Leaks' full black-box attack, Chen et
#   al. 2020): needs only samples, so it applies to every method, GANs included.
ATTACKS = ("loss", "loss_difference", "learned", "distance")
LOSS_ATTACKS = ("loss", "loss_difference", "learned")  # those that read the denoising loss
ATTACK_TITLES = {"loss": "loss", "loss_difference": "loss difference (vs base model)",
                 "learned": "learned attack (MLP on loss maps)", "distance": "distance to generated set"}
# TPR at a false-positive rate: "lowest" is 1 / (number of non-members), one non-member above the threshold, the
# lowest FPR above 0 that the sample can show (with 40 non-members 2.5 %: a "1 % FPR" would be FPR 0 there)
TPR_AT_LOWEST_FPR, TPR_AT_10PCT_FPR = "tpr_at_lowest_fpr", "tpr_at_10pct_fpr"
STATISTICS = ("auc", TPR_AT_LOWEST_FPR, TPR_AT_10PCT_FPR)
# config `methods` kinds that train a generator of their own: no denoising loss to attack (common.smk: GAN_KINDS)
NO_DENOISING_LOSS_KINDS = ("gan", "stylegan3")
NOT_APPLICABLE_GAN = "not applicable: no denoising loss"
NOT_APPLICABLE_BASE = "not applicable: the base model is its own reference (difference identically 0)"


def lowest_fpr(non_members: int) -> float:
    """The false-positive rate of one non-member above the threshold: the lowest FPR above 0 a sample shows."""
    return 1 / non_members


def metric_name(attack: str, statistic: str) -> str:
    """E.g. mi_loss_difference_auc, mi_learned_tpr_at_lowest_fpr."""
    return f"mi_{attack}_{statistic}"


@dataclass(frozen=True)
class LearnedAttackSettings:
    """`privacy_audit.learned_attack` (the schema documents each key)."""

    map_size: int  # side the per-element loss maps are average-pooled to, per latent channel and timestep
    hidden: tuple[int, ...]  # widths of the MLP's hidden layers
    dropout: float
    steps: int  # full-batch Adam steps of each fold's MLP
    learning_rate: float
    weight_decay: float
    folds: int  # members are scored by an MLP trained on the other folds' members


@dataclass(frozen=True)
class AuditSettings(StageSettings):
    """The `privacy_audit` section."""

    SECTION = "privacy_audit"
    timesteps: tuple[int, ...]  # diffusion timesteps the loss is averaged over
    noise_draws: int  # noise draws per image and timestep
    batch_size: int  # images per UNet forward pass
    seed: int  # of the noise draws, the member / non-member subsampling and the bootstrap
    bootstrap_resamples: int  # of the 95 % intervals; 0 = none
    learned_attack: LearnedAttackSettings
