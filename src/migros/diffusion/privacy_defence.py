"""Stable PrivateLoRA (Luo et al., arXiv 2402.11989, there "SMP-LoRA"): adapting while defending against
membership inference, a training option of any adapter kind (`privacy: {defence: stable_privatelora}`).

A proxy attack model h (a small MLP) reads the per-element noise-prediction loss of an image, the squared error of
the UNet's noise prediction at every latent position, flattened: the loss attacks of the audit average that same
map, h may weigh it. Every optimizer step of the fine-tune:

1. the adapter minimises  L / (beta + alpha * CE_h(batch as members))  where L is the usual noise-prediction loss
   and CE_h the proxy's cross-entropy at calling the batch's images members. A larger CE means the proxy tells the
   training images less well from others, so the ratio rewards fitting the task in a way the proxy cannot
   exploit. This is the stable form of the paper: PrivateLoRA's min-max adds the proxy's gain to L instead, whose
   gradient scale swings with the proxy; the ratio rescales it. The proxy's output for the batch comes from the
   same UNet pass as L (the paper's code runs a second pass with fresh noise; one pass costs half as much). The
   proxy's weights get no update from this step.
2. the proxy then takes `proxy_steps` Adam steps on its binary cross-entropy over `proxy_batch_size` members and as
   many non-members, through the adapted model with no gradient to the adapter: it maximises its membership gain.

Which data the proxy sees (`proxy_non_members`): its members are the training slices, which the adapter trains on
anyway; its non-members are the dataset's `unused` slices, cases that the split put in neither train nor test,
the larger class subsampled to the smaller one's count. It never sees a test slice: the test slices are the
audit's non-members, and a proxy (hence an adapter) that had learnt them would void the audit, so they are refused
here and again by the audit (`membership.check_auxiliary`), whose learned attack trains on the same slices, as the
reference's evaluation attack does. Patients never straddle splits (`data.slices.balanced_split`), which is
checked too.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from migros.prompts import PromptSettings, split_prompts
from migros.settings import settings_from_section

log = logging.getLogger(__name__)
PROXY_SPLIT = "unused"  # slices of cases in neither the train nor the test split


class DefenceDataError(ValueError):
    """Proxy data that the defence cannot use, or that would void the audit."""


@dataclass(frozen=True)
class DefenceSettings:
    """A method's `privacy` entry (schema `$defs/privacy_defence`, which documents each key)."""

    defence: str
    alpha: float
    beta: float
    proxy_steps: int
    proxy_batch_size: int
    proxy_learning_rate: float
    proxy_weight_decay: float
    proxy_hidden: tuple[int, ...]
    proxy_dropout: float

    @classmethod
    def from_method(cls, method: dict, name: str) -> "DefenceSettings | None":
        """The defence of `methods.<name>`, or None when it has no `privacy` entry."""
        if "privacy" not in method:
            return None
        return settings_from_section(cls, method["privacy"], f"methods.{name}.privacy")


def proxy_non_members(metadata: pd.DataFrame, prompts: PromptSettings, seed: int) -> pd.DataFrame:
    """The non-members of the proxy, and of the audit's learned attack: the `unused` slices with prompts built as
    the training prompts are (image, prompt, label), per class a seeded subset of the smaller class's count.
    Raises DefenceDataError when a class has none, or when a patient of these slices also has slices in the train
    or the test split."""
    unused = metadata[metadata.split == PROXY_SPLIT]
    if "patient" in metadata:
        used_patients = set(metadata.patient[metadata.split != PROXY_SPLIT])
        if shared := sorted(set(unused.patient) & used_patients):
            raise DefenceDataError(f"patient(s) {shared[:5]} have unused slices and slices in the train or test split: "
                                   "the proxy attack model would see patients of the audit")
    counts = unused.label.value_counts().reindex([0, 1], fill_value=0)
    if counts.min() == 0:
        raise DefenceDataError(
            f"the privacy audit's learned attack and the privacy defence's proxy train on slices in neither the train "
            f"nor the test split, and there are {counts[0]} healthy and {counts[1]} tumour ones: give the dataset more "
            "cases, or lower split.train / split.test")
    generator = np.random.default_rng(seed)
    chosen = sorted(np.concatenate([
        generator.choice(unused.index[unused.label == label], size=counts.min(), replace=False) for label in (0, 1)
    ]))
    return split_prompts(unused.loc[chosen], prompts, split=PROXY_SPLIT)[["image", "prompt", "label"]]


def write_proxy_non_members(metadata_csv: Path, prompts: PromptSettings, seed: int, output_csv: Path) -> None:
    """Rule `proxy_non_members`."""
    chosen = proxy_non_members(pd.read_csv(metadata_csv), prompts, seed)
    log.info("proxy non-members: %d slices (labels %s)", len(chosen), chosen.label.value_counts().to_dict())
    chosen.to_csv(output_csv, index=False)


class ProxyAttack(nn.Module):
    """Per-element loss map → logit of "member": Linear/ReLU/Dropout per hidden width, then one output."""

    def __init__(self, input_size: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        layers, width = [], input_size
        for next_width in hidden:
            layers += [nn.Linear(width, next_width), nn.ReLU(), nn.Dropout(dropout)]
            width = next_width
        self.layers = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, loss_maps: torch.Tensor) -> torch.Tensor:
        return self.layers(loss_maps.flatten(1)).squeeze(1)


@dataclass(frozen=True)
class LatentSet:
    """Images as the fine-tune holds them: VAE posterior mean and std, and the token ids of their prompts."""

    mean: torch.Tensor
    std: torch.Tensor
    token_ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.mean)


# (latent sample, token ids, generator) → the per-element squared error of the model's noise prediction
LossMaps = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def proxy_generator(seed: int, step: int, proxy_step: int) -> torch.Generator:
    """The draws of one proxy step, a stream apart from the fine-tune's own (`finetune.step_generator`)."""
    state = np.random.SeedSequence([seed, step, proxy_step, 1]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> 1))


class StablePrivateLoRA:
    """The proxy attack model, its optimizer and the two halves of a defended step (module docstring)."""

    def __init__(self, settings: DefenceSettings, members: LatentSet, non_members: LatentSet, seed: int,
                 device: torch.device):
        self.settings, self.members, self.non_members, self.seed = settings, members, non_members, seed
        input_size = int(np.prod(members.mean.shape[1:]))
        with torch.random.fork_rng(devices=[]):  # the proxy's initial weights leave the fine-tune's draws alone
            torch.manual_seed(seed)
            self.proxy = ProxyAttack(input_size, settings.proxy_hidden, settings.proxy_dropout).to(device)
        self.optimizer = torch.optim.Adam(self.proxy.parameters(), lr=settings.proxy_learning_rate,
                                          weight_decay=settings.proxy_weight_decay)

    def objective(self, task_loss: torch.Tensor, loss_maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the adapter's objective, the proxy's cross-entropy on the batch as members)."""
        self.proxy.eval()
        logits = self.proxy(loss_maps)
        member_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return task_loss / (self.settings.beta + self.settings.alpha * member_loss), member_loss

    def draw(self, images: LatentSet, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(images), (self.settings.proxy_batch_size,), generator=generator)
        sample = images.mean[index] + images.std[index] * torch.randn(images.mean[index].shape, generator=generator)
        return sample, images.token_ids[index]

    def train_proxy(self, step: int, loss_maps: LossMaps) -> float:
        """The proxy's steps after optimizer step `step`; returns its last binary cross-entropy."""
        self.proxy.train()
        for proxy_step in range(self.settings.proxy_steps):
            generator = proxy_generator(self.seed, step, proxy_step)
            with torch.no_grad():
                maps = torch.cat([loss_maps(*self.draw(images, generator), generator)
                                  for images in (self.members, self.non_members)])
            labels = torch.cat([torch.ones(self.settings.proxy_batch_size), torch.zeros(self.settings.proxy_batch_size)])
            loss = F.binary_cross_entropy_with_logits(self.proxy(maps), labels.to(maps.device))
            self.optimizer.zero_grad(set_to_none=True)  # also drops what the adapter's backward left in the proxy
            loss.backward()
            self.optimizer.step()
        return loss.item()

    def state_dict(self) -> dict:
        return {"proxy": self.proxy.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.proxy.load_state_dict(state["proxy"])
        self.optimizer.load_state_dict(state["optimizer"])
