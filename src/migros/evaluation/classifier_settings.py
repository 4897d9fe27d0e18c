"""The classifier stage's settings and the names of its conditions, apart from the model code so that the
report reads them without importing torch.

Settings (the config's `classifier` section plus the dataset's `image_size`): `pretrained` (imagenet | none),
`budget` ({epochs: N} or {steps: N}), `batch_size`, `learning_rate`, `seeds`, `image_size`, `blur`
{`kernel_size`, `sigma`: [min, max], `probability`}.
"""

from dataclasses import dataclass

BUDGET_UNITS = ("epochs", "steps")
REAL_ONLY = "real_only"
TSTR_PREFIX = "synthetic_only:"
# The real-only classifier of each seed tested on the VAE's reconstructions of the real test slices (the
# autoencoder ceiling: do lesions survive the VAE?), reported under this method name.
VAE_RECONSTRUCTION = "vae_reconstruction"


@dataclass(frozen=True)
class ClassifierSettings:
    pretrained: str
    budget_unit: str
    budget: int
    batch_size: int
    learning_rate: float
    seeds: tuple[int, ...]
    image_size: int
    blur_kernel_size: int
    blur_sigma: tuple[float, float]
    blur_probability: float

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
    def from_dict(cls, settings: dict) -> "ClassifierSettings":
        """The config's `classifier` dict; `budget` is {epochs: N} or {steps: N}; `blur` is a nested dict
        {kernel_size, sigma: [min, max], probability}."""
        if settings["pretrained"] not in ("imagenet", "none"):
            raise ValueError(f"classifier pretrained must be 'imagenet' or 'none', not {settings['pretrained']!r}")
        budget = settings["budget"]
        if len(budget) != 1 or next(iter(budget)) not in BUDGET_UNITS or int(next(iter(budget.values()))) < 1:
            raise ValueError(f"classifier budget must be {{epochs: N}} or {{steps: N}} with N ≥ 1, not {budget!r}")
        (unit, count), = budget.items()
        blur = settings["blur"]
        return cls(
            pretrained=settings["pretrained"], budget_unit=unit, budget=int(count), batch_size=int(settings["batch_size"]),
            learning_rate=float(settings["learning_rate"]), seeds=tuple(int(seed) for seed in settings["seeds"]),
            image_size=int(settings["image_size"]), blur_kernel_size=int(blur["kernel_size"]),
            blur_sigma=(float(blur["sigma"][0]), float(blur["sigma"][1])), blur_probability=float(blur["probability"]),
        )
