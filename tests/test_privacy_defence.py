"""Stable PrivateLoRA's pieces: which slices its proxy attack model sees, the adapter's objective, the proxy's
learning. The defended fine-tune itself runs in test_finetune.py and in the tiny workflow (test_workflow.py)."""

import pandas as pd
import pytest
import torch

from migros.diffusion.privacy_defence import (
    DefenceDataError, DefenceSettings, LatentSet, StablePrivateLoRA, check_separation, proxy_non_members,
)
from migros.evaluation.membership import AuditSettings, run_audit_stage
from migros.prompts import PromptSettings

PROMPTS = PromptSettings.from_config({"positive": "Prostate MRI t2, with {size} tumour", "negative": "Prostate MRI t2 healthy",
                                      "size_thresholds": {"small_below": 0.01, "large_from": 0.02}})
SETTINGS = DefenceSettings(defence="stable_privatelora", alpha=2.0, beta=0.5, proxy_steps=1, proxy_batch_size=8,
                           proxy_learning_rate=1e-2, proxy_weight_decay=0.0, proxy_hidden=(16,), proxy_dropout=0.0)


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


def test_the_audit_refuses_a_defended_method_whose_proxy_saw_a_test_slice(tmp_path):
    table = metadata({"train": 4, "test": 4, "unused": 4})
    check_separation(proxy_non_members(table, PROMPTS, 0).image.tolist(), table.image[table.split == "test"].tolist())
    table.to_csv(tmp_path / "metadata.csv", index=False)
    leaked = pd.concat([proxy_non_members(table, PROMPTS, 0), table[table.split == "test"].head(1)])
    leaked.to_csv(tmp_path / "proxy.csv", index=False)
    settings = AuditSettings.from_config({"timesteps": [500], "noise_draws": 1, "batch_size": 4, "seed": 0,
                                          "bootstrap_resamples": 10})
    with pytest.raises(DefenceDataError, match="test0.png"):  # before any model or image is read
        run_audit_stage(tmp_path / "no_model", tmp_path / "no_adapter", tmp_path / "none.csv", tmp_path / "metadata.csv",
                        tmp_path / "none.csv", PROMPTS, settings, 32, "d", "m", "lora", tmp_path / "m.csv",
                        tmp_path / "s.csv", proxy_non_members_csv=tmp_path / "proxy.csv")


def latent_set(n: int) -> LatentSet:
    return LatentSet(torch.zeros(n, 4, 2, 2), torch.ones(n, 4, 2, 2), torch.zeros(n, 77, dtype=torch.long))


def test_the_adapter_minimises_its_loss_over_beta_plus_alpha_times_the_proxys_member_cross_entropy():
    defender = StablePrivateLoRA(SETTINGS, latent_set(4), latent_set(4), seed=0, device=torch.device("cpu"))
    task_loss = torch.tensor(0.3, requires_grad=True)
    loss_maps = torch.rand(3, 4, 2, 2)
    objective, member_loss = defender.objective(task_loss, loss_maps)
    logits = defender.proxy(loss_maps)
    expected_ce = torch.nn.functional.softplus(-logits).mean()  # -log sigmoid: "member" is the right answer
    assert torch.isclose(member_loss, expected_ce)
    assert torch.isclose(objective, 0.3 / (0.5 + 2.0 * expected_ce))
    objective.backward()
    assert torch.isclose(task_loss.grad, 1 / (0.5 + 2.0 * expected_ce.detach()))


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
