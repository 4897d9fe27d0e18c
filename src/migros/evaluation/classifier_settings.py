"""The classifier stage's settings and the names of its conditions, apart from the model code so that the
report reads them without importing torch.

Settings (the config's `classifier` section plus the dataset's `image_size`): `pretrained` (imagenet | none),
`budget` ({epochs: N} or {steps: N}), `batch_size`, `learning_rate`, `seeds`, `image_size`, `blur`
{`kernel_size`, `sigma`: [min, max], `probability`}, `train_on_synthetic` (every_generated_set |
augmentation_methods | none: which generated sets get a synthetic-only classifier).
"""

from dataclasses import dataclass
from typing import Self

from migros.settings import StageSettings

REAL_ONLY = "real_only"
TSTR_PREFIX = "synthetic_only:"
# The real-only classifier of each seed tested on the VAE's reconstructions of the real test slices (the
# autoencoder ceiling: do lesions survive the VAE?), reported under this method name.
VAE_RECONSTRUCTION = "vae_reconstruction"


@dataclass(frozen=True)
class BlurSettings:
    kernel_size: int
    sigma: tuple[float, float]  # [min, max]
    probability: float


@dataclass(frozen=True)
class ClassifierSettings(StageSettings):
    SECTION = "classifier"
    pretrained: str
    budget_unit: str  # epochs | steps, the one key of the config's `budget`
    budget: int
    batch_size: int
    learning_rate: float
    seeds: tuple[int, ...]
    image_size: int  # the dataset's
    blur: BlurSettings
    train_on_synthetic: str  # every_generated_set | augmentation_methods | none

    def describe_budget(self) -> str:
        if self.budget_unit == "steps":
            return f"{self.budget} optimizer steps for every condition"
        return f"{self.budget} epoch{'s' if self.budget > 1 else ''} (steps grow with the training set)"

    def optimizer_steps_per_pass(self, train_size: int) -> int:
        """Batches in one pass over `train_size` images (a last batch of one image is skipped)."""
        return train_size // self.batch_size + (train_size % self.batch_size > 1)

    def optimizer_steps(self, train_size: int) -> int:
        """Optimizer steps of one training run on `train_size` images."""
        if self.budget_unit == "steps":
            return self.budget
        return self.budget * self.optimizer_steps_per_pass(train_size)

    @classmethod
    def from_config(cls, section: dict) -> Self:
        """`section`'s `budget` is {epochs: N} or {steps: N} (the schema allows exactly one key)."""
        if "budget" not in section:
            return super().from_config(section)  # which names the missing key
        (unit, count), = section["budget"].items()
        return super().from_config({**section, "budget_unit": unit, "budget": count})
