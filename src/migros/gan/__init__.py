"""The GAN baselines, trained instead of adapting the diffusion model: a small class-conditional GAN for the
CPU default (`kind: gan`) and the official StyleGAN3 on a GPU (`kind: stylegan3`, paper scale). Each writes the
same generated set (images/ + manifest.csv) as the diffusion methods."""

from migros.gan.conditional import GanSettings
from migros.gan.stylegan3 import StyleGan3Settings

# kind: settings of its `methods` entry (without `kind`); common.smk's GAN_KINDS lists the same kinds
GAN_KINDS = {"gan": GanSettings, "stylegan3": StyleGan3Settings}

__all__ = ["GAN_KINDS", "GanSettings", "StyleGan3Settings"]
