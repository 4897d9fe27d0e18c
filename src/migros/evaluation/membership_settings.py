"""The membership-inference audit's settings and names, without torch or scikit-learn, so that the report's
environment (tables, figure) can read them; the audit itself is `migros.evaluation.membership`."""

from dataclasses import dataclass

from migros.settings import StageSettings

MEMBER, NON_MEMBER = "member", "non_member"
# Attacks, each a score per image, higher = "member":
# loss: -L_adapted(x), the adapted model's noise-prediction loss (Yeom et al. 2018's loss threshold attack);
# loss_difference: L_base(x) - L_adapted(x), the loss calibrated against the pre-trained model (Carlini et al.
#   2022, "reference models"; for diffusion, the base model is the natural reference);
# distance: -min_j ||x - g_j||_2 over the method's generated images (GAN-Leaks' full black-box attack, Chen et
#   al. 2020): needs only samples, so it applies to every method, GANs included.
ATTACKS = ("loss", "loss_difference", "distance")
LOSS_ATTACKS = ("loss", "loss_difference")
ATTACK_TITLES = {"loss": "loss", "loss_difference": "loss difference (vs base model)",
                 "distance": "distance to generated set"}
FPR_TARGETS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_10pct_fpr": 0.10}
STATISTICS = ("auc", *FPR_TARGETS)
# config `methods` kinds that train a generator of their own: no denoising loss to attack (common.smk: GAN_KINDS)
NO_DENOISING_LOSS_KINDS = ("gan", "stylegan3")
NOT_APPLICABLE_GAN = "not applicable: no denoising loss"
NOT_APPLICABLE_BASE = "not applicable: the base model is its own reference (difference identically 0)"


def metric_name(attack: str, statistic: str) -> str:
    """E.g. mi_loss_difference_auc, mi_distance_tpr_at_1pct_fpr."""
    return f"mi_{attack}_{statistic}"


@dataclass(frozen=True)
class AuditSettings(StageSettings):
    """The `privacy_audit` section."""

    SECTION = "privacy_audit"
    timesteps: tuple[int, ...]  # diffusion timesteps the loss is averaged over
    noise_draws: int  # noise draws per image and timestep
    batch_size: int  # images per UNet forward pass
    seed: int  # of the noise draws, the member / non-member subsampling and the bootstrap
    bootstrap_resamples: int  # of the 95 % intervals; 0 = none
