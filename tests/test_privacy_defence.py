"""Stable PrivateLoRA's pieces: which slices its proxy attack model sees, the adapter's objective, the proxy's
learning, and the defence at work on a planted over-fit case. The defended fine-tune's mechanics (resuming, the
proxy's weight) are also tested in test_finetune.py, and it runs in the tiny workflow (test_workflow.py)."""

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from migros.diffusion.privacy_defence import (
    DefenceDataError, DefenceSettings, LatentSet, StablePrivateLoRA, proxy_non_members,
)
from migros.evaluation.membership import AuditError, AuditSettings, run_audit_stage
from migros.prompts import PromptSettings
from planted_audit import PROMPTS as PLANTED_PROMPTS, SIZE, smooth_images, tiny_pipeline, train_unet

PROMPTS = PromptSettings.from_config({"positive": "Prostate MRI t2, with {size} tumour", "negative": "Prostate MRI t2 healthy",
                                      "size_thresholds": {"small_below": 0.01, "large_from": 0.02}})
SETTINGS = DefenceSettings(defence="stable_privatelora", alpha=2.0, beta=0.5, proxy_steps=1, proxy_batch_size=8,
                           proxy_learning_rate=1e-2, proxy_weight_decay=0.0, proxy_hidden=(16,), proxy_dropout=0.0)
LEARNED = {"map_size": 4, "hidden": [32], "dropout": 0.0, "steps": 200, "learning_rate": 1e-3, "weight_decay": 1e-2,
           "folds": 4}


def metadata(splits: dict[str, int]) -> pd.DataFrame:
    """`count` cases per split, alternating labels, one patient per case."""
    rows = []
    for split, count in splits.items():
        for i in range(count):
            case = f"{split}{i}"
            rows.append({"case": case, "patient": f"p_{case}", "split": split, "label": i % 2, "image": f"{case}.png",
                         "mask": f"{case}_mask.png", "lesion_area_fraction": 0.015 * (i % 2)})
    return pd.DataFrame(rows)


def test_the_proxy_sees_only_unused_slices_balanced_by_class():
    table = metadata({"train": 10, "test": 10, "unused": 7})  # unused: 4 healthy, 3 tumour
    chosen = proxy_non_members(table, PROMPTS, seed=0)
    split_of = dict(zip(table.image, table.split))
    assert {split_of[image] for image in chosen.image} == {"unused"}
    assert chosen.label.value_counts().to_dict() == {0: 3, 1: 3}
    assert set(chosen.prompt) == {"Prostate MRI t2 healthy", "Prostate MRI t2, with medium tumour"}
    pd.testing.assert_frame_equal(chosen, proxy_non_members(table, PROMPTS, seed=0))
    assert not set(proxy_non_members(table, PROMPTS, seed=1).image) - set(table.image[table.split == "unused"])


def test_no_unused_slices_of_a_class_or_a_patient_across_splits_is_an_error():
    with pytest.raises(DefenceDataError, match="0 tumour"):
        proxy_non_members(metadata({"train": 4, "test": 4, "unused": 1}), PROMPTS, seed=0)
    shared = metadata({"train": 4, "test": 4, "unused": 4})
    shared.loc[shared.split == "unused", "patient"] = "p_test0"
    with pytest.raises(DefenceDataError, match="p_test0"):
        proxy_non_members(shared, PROMPTS, seed=0)


def test_the_audit_refuses_auxiliary_slices_that_include_a_test_slice(tmp_path):
    """The proxy's non-members are the audit's learned attack's too: one of them a test slice (an audited
    non-member) voids the audit, which stops before reading any model or image."""
    table = metadata({"train": 4, "test": 4, "unused": 4})
    table.to_csv(tmp_path / "metadata.csv", index=False)
    leaked = pd.concat([proxy_non_members(table, PROMPTS, 0), table[table.split == "test"].head(1)])
    leaked.to_csv(tmp_path / "proxy.csv", index=False)
    settings = AuditSettings.from_config({"timesteps": [500], "noise_draws": 1, "batch_size": 4, "seed": 0,
                                          "bootstrap_resamples": 10, "learned_attack": LEARNED})
    with pytest.raises(AuditError, match="test0.png"):
        run_audit_stage(tmp_path / "no_model", tmp_path / "no_adapter", tmp_path / "none.csv", tmp_path / "metadata.csv",
                        tmp_path / "none.csv", PROMPTS, settings, 32, "d", "m", "lora", tmp_path / "m.csv",
                        tmp_path / "s.csv", auxiliary_non_members_csv=tmp_path / "proxy.csv")


def latent_set(n: int) -> LatentSet:
    return LatentSet(torch.zeros(n, 4, 2, 2), torch.ones(n, 4, 2, 2), torch.zeros(n, 77, dtype=torch.long))


def test_the_proxys_cross_entropy_pulls_the_adapter_with_its_weight_alpha():
    """The adversarial term's gradient reaches the adapter's weights through the loss maps: with objective
    O = L / (beta + alpha * CE), dO/dw = dL/dw / D - alpha * L / D² * dCE/dw, D the denominator. Alpha 0 and beta 1
    leave dL/dw exactly, the undefended gradient."""
    generator = torch.Generator().manual_seed(0)
    adapter = torch.nn.Linear(16, 16)  # stands for the adapted layers: the maps are its squared errors
    inputs, targets = torch.randn(3, 16, generator=generator), torch.randn(3, 16, generator=generator)

    def objective_gradient(settings):
        defender = StablePrivateLoRA(settings, latent_set(4), latent_set(4), seed=0, device=torch.device("cpu"))
        maps = (adapter(inputs) - targets).pow(2).reshape(3, 4, 2, 2)
        objective, member_loss = defender.objective(maps.mean(), maps)
        # the proxy's cross-entropy at calling the maps members: -log sigmoid(logit)
        torch.testing.assert_close(member_loss, torch.nn.functional.softplus(-defender.proxy(maps)).mean())
        gradient, = torch.autograd.grad(objective, adapter.weight, retain_graph=True)
        parts = [torch.autograd.grad(term, adapter.weight, retain_graph=True)[0] for term in (maps.mean(), member_loss)]
        return gradient, parts, maps.mean().detach(), member_loss.detach()

    gradient, (task_gradient, proxy_gradient), task_loss, member_loss = objective_gradient(SETTINGS)
    denominator = SETTINGS.beta + SETTINGS.alpha * member_loss
    expected = task_gradient / denominator - SETTINGS.alpha * task_loss / denominator**2 * proxy_gradient
    torch.testing.assert_close(gradient, expected)
    assert (SETTINGS.alpha * task_loss / denominator**2 * proxy_gradient).norm() > 0.05 * gradient.norm()
    undefended, (task_gradient, _), _, _ = objective_gradient(replace(SETTINGS, alpha=0.0, beta=1.0))
    assert torch.equal(undefended, task_gradient)


def test_the_proxy_learns_to_tell_members_from_non_members_by_their_loss():
    """Members (latent mean 0) get small squared errors, non-members (mean 1) large ones: the proxy's loss falls
    and it scores members above non-members."""
    members, non_members = latent_set(16), latent_set(16)
    non_members = LatentSet(non_members.mean + 1, non_members.std, non_members.token_ids)
    defender = StablePrivateLoRA(SETTINGS, members, non_members, seed=0, device=torch.device("cpu"))

    def squared_errors(sample, tokens, generator):  # a model that fits the members, not the others
        return (sample.mean(dim=(1, 2, 3), keepdim=True).abs() + 0.1 * torch.rand(sample.shape, generator=generator)
                ).expand_as(sample) ** 2

    first = defender.train_proxy(1, squared_errors)
    last = [defender.train_proxy(step, squared_errors) for step in range(2, 80)][-1]
    assert last < first / 4
    defender.proxy.eval()
    generator = torch.Generator().manual_seed(5)
    scores = [defender.proxy(squared_errors(*defender.draw(images, generator), generator)).mean()
              for images in (members, non_members)]
    assert scores[0] > scores[1]
    state = defender.state_dict()
    again = StablePrivateLoRA(SETTINGS, members, non_members, seed=0, device=torch.device("cpu"))
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(again.proxy.parameters(), defender.proxy.parameters()))


def test_the_defence_lowers_the_loss_attacks_auc_on_a_planted_over_fit_case(tmp_path):
    """Few slices, many steps: LoRA fitted 300 steps to 4 slices over-fits them, so that the loss attack tells them
    from 4 other slices of the same kind; the same LoRA trained with Stable PrivateLoRA (its proxy learning 4 more
    slices as non-members) is told apart less well. The base UNet first learns to denoise such images, as a
    pretrained model has: on the random demo model a LoRA learns nothing in a test-length run."""
    from migros.adapters import build_adapter
    from migros.diffusion.finetune import TrainingSettings, finetune, load_images, training_steps
    from migros.evaluation.membership import denoising_losses, roc_auc

    torch.set_num_threads(1)
    members, non_members, auxiliary, generic = (smooth_images(tmp_path, count, seed)
                                                for count, seed in ((4, 0), (4, 1), (4, 2), (16, 3)))
    prompts = list(PLANTED_PROMPTS) * 2
    base = tiny_pipeline(members + non_members)
    train_unet(base, generic, steps=300)
    lora = {"kind": "lora", "rank": 8, "alpha": 8}
    training = TrainingSettings.from_config({"epochs": 150, "batch_size": 2, "learning_rate": 3e-3,
                                             "adam_betas": [0.9, 0.999], "seed": 0, "checkpoint_every": 10_000,
                                             "mixed_precision": "no"})
    defence = DefenceSettings(defence="stable_privatelora", alpha=1.0, beta=1.0, proxy_steps=1, proxy_batch_size=4,
                              proxy_learning_rate=1e-3, proxy_weight_decay=1e-4, proxy_hidden=(64,), proxy_dropout=0.0)
    audit = AuditSettings.from_config({"timesteps": [100, 300, 500, 700, 900], "noise_draws": 2, "batch_size": 8,
                                       "seed": 0, "bootstrap_resamples": 0, "learned_attack": LEARNED})

    def loss_attack_auc(defended: bool) -> float:
        pipeline = copy.deepcopy(base)
        adapter = build_adapter(pipeline, lora, seed=0, total_steps=training_steps(len(members), training))
        frame = lambda images: pd.DataFrame({"image": images, "prompt": prompts, "label": [0, 1] * 2})
        finetune(pipeline, adapter, frame(members), training, lora, tmp_path / f"run_{defended}", SIZE,
                 defence=defence if defended else None, proxy_non_members=frame(auxiliary) if defended else None)
        scores = [-denoising_losses(pipeline, load_images(images, SIZE), prompts, role, audit)[0]
                  for images, role in ((members, "member"), (non_members, "non_member"))]
        return roc_auc(*scores)

    undefended = loss_attack_auc(defended=False)
    assert undefended >= 0.85  # the planted over-fit
    assert loss_attack_auc(defended=True) < undefended
