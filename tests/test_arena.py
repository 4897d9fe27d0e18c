"""ARENA: the gates take the paper's proximal gradient step v ← ξ(v − ρ ∇_v L, ρ λ), so λ weighs the penalty
against the loss and a gate at zero returns when the loss pulls it harder than λ; on a layer whose target is a
known low-rank update the surviving rank is that rank; checkpoints resume, and the live ranks export to a
standard PEFT LoRA."""

import copy
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from tiny_models import (
    assert_peft_export_reproduces_outputs, diffusion_loss, prefixed_linear_names, regression_loss, regression_models,
    tiny_text_encoder, tiny_unet,
)

from migros.tuners.arena import ArenaConfig, ArenaModel, soft_threshold
from migros.tuners.selora import SeLoraConfig, SeLoraModel

pytestmark = pytest.mark.usefixtures("single_thread")


def regression_arena(**overrides) -> tuple[ArenaModel, dict]:
    models = regression_models()
    settings = {"target_modules": prefixed_linear_names(models), "init_rank": 4, "l1_penalty": 0.0,
                "gate_learning_rate": 0.02, "lora_alpha": 4.0, "init_seed": 7} | overrides
    return ArenaModel(models, ArenaConfig(**settings)), models


def train(arena, models, loss_fn, first_step, last_step, lr=1e-2, optimizer=None) -> torch.optim.Optimizer:
    """The pipeline's loop: backward, Adam's step on A and B, the gates' proximal gradient step, the ranks logged."""
    optimizer = optimizer or torch.optim.Adam(arena.trainable_parameters(), lr=lr)
    for step in range(first_step, last_step + 1):
        loss_fn(models, step).backward()
        optimizer.step()
        arena.gate_optimizer.step()
        optimizer.zero_grad()
        arena.gate_optimizer.zero_grad()
        arena.log_rank_changes(step)
    return optimizer


def low_rank_task(true_rank: int, size: int = 16, seed: int = 0):
    """A frozen nn.Linear and the loss of fitting its own map plus a rank-`true_rank` update (singular values from
    1 down to 0.6), on batches of 32 standard normal inputs: the update the adapter must learn has rank
    `true_rank`."""
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Linear(size, size))
    generator = torch.Generator().manual_seed(seed)
    left, _ = torch.linalg.qr(torch.randn(size, true_rank, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(size, true_rank, generator=generator))
    update = left @ torch.diag(torch.linspace(1.0, 0.6, true_rank)) @ right.T
    target_weight, target_bias = layer[0].weight.detach() + update, layer[0].bias.detach().clone()

    def loss_fn(models, step):
        x = torch.randn(32, size, generator=torch.Generator().manual_seed(10_000 * seed + step))
        return F.mse_loss(models["layer"](x), F.linear(x, target_weight, target_bias))

    return {"layer": layer}, loss_fn


def low_rank_arena(models, **overrides) -> ArenaModel:
    settings = {"target_modules": ["layer.0"], "init_rank": 6, "l1_penalty": 0.05, "gate_learning_rate": 0.1,
                "warmup_steps": 50, "lora_alpha": 6.0, "init_seed": 0} | overrides
    return ArenaModel(models, ArenaConfig(**settings))


@pytest.mark.parametrize("overrides", [
    {"target_modules": []}, {"init_rank": 0}, {"l1_penalty": -0.1}, {"l1_penalty": float("nan")},
    {"gate_learning_rate": 0}, {"gate_learning_rate": -0.1}, {"gate_learning_rate": float("nan")},
    {"warmup_steps": -1}, {"lora_alpha": 0}, {"init_seed": 1.5},
])
def test_config_rejects_invalid_values(overrides):
    settings = {"target_modules": ["a"], "init_rank": 2, "l1_penalty": 0.1, "gate_learning_rate": 0.1} | overrides
    with pytest.raises(ValueError):
        ArenaConfig(**settings)


def test_the_gate_step_is_the_papers_proximal_gradient_step_and_a_zeroed_gate_can_return():
    arena, _ = regression_arena(init_rank=6, l1_penalty=0.5, gate_learning_rate=0.2)  # threshold ρλ = 0.1
    layer = arena.layers["single.0"]
    a, b = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    with torch.no_grad():
        layer.gate.copy_(torch.tensor([0.9, -0.9, 0.05, 0.0, 0.0, 0.0]))
    arena.log_rank_changes(1)
    layer.gate.grad = torch.tensor([0.5, -0.5, 0.1, 0.2, 0.8, -0.8])
    arena.gate_optimizer.step()
    # ξ(v − ρg, ρλ): the first two move by ρg and shrink by 0.1; the third is thresholded to zero; a gate at zero
    # stays there while |g| ≤ λ and returns when the loss pulls it harder (|g| = 0.8 > λ = 0.5)
    torch.testing.assert_close(layer.gate.detach(), torch.tensor([0.7, -0.7, 0.0, 0.0, -0.06, 0.06]))
    assert torch.equal(layer.lora_A, a) and torch.equal(layer.lora_B, b)  # A and B are the other optimizer's
    assert arena.log_rank_changes(2) == {"single.0": 4}
    assert [record for record in arena.rank_history if record[1] == "single.0"] == [
        (0, "single.0", 6), (1, "single.0", 3), (2, "single.0", 4)]
    torch.testing.assert_close(soft_threshold(torch.tensor([0.3, -0.3, 0.05]), 0.1), torch.tensor([0.2, -0.2, 0.0]))


def test_warm_up_steps_are_plain_gradient_steps():
    arena, _ = regression_arena(l1_penalty=1.0, gate_learning_rate=0.1, warmup_steps=2)
    gate = arena.layers["single.0"].gate
    for expected in ([0.99] * 4, [0.98] * 4, [0.87] * 4):  # the third step is the first with the threshold 0.1
        gate.grad = torch.full((4,), 0.1)
        arena.gate_optimizer.step()
        torch.testing.assert_close(gate.detach(), torch.tensor(expected))


def test_lambda_weighs_the_penalty_against_the_loss():
    """The objective is L + λ‖v‖₁: scaled down 100×, the same loss no longer holds its rank against the same λ;
    with λ scaled down too (and ρ up, so the steps are the same) training is as before."""
    def trained(loss_scale, l1_penalty, gate_learning_rate):
        models, loss_fn = low_rank_task(true_rank=1)
        arena = low_rank_arena(models, l1_penalty=l1_penalty, gate_learning_rate=gate_learning_rate)
        train(arena, models, lambda m, step: loss_scale * loss_fn(m, step), 1, 400)
        return arena

    as_is = trained(1.0, 0.05, 0.1)
    assert as_is.ranks() == {"layer.0": 1}
    assert trained(0.01, 0.05, 0.1).ranks() == {"layer.0": 0}
    rescaled = trained(0.01, 0.05 * 0.01, 0.1 / 0.01)
    assert rescaled.ranks() == as_is.ranks()
    torch.testing.assert_close(rescaled.layers["layer.0"].gate, as_is.layers["layer.0"].gate, rtol=0, atol=1e-3)


@pytest.mark.parametrize("true_rank", [1, 2, 3])
def test_the_surviving_rank_is_the_rank_of_a_known_low_rank_update(true_rank):
    """A layer that must learn a rank-k update, adapted at rank 6: the penalty prunes the ranks it does not need.
    A pruned gate returns for a few steps when a batch pulls it harder than λ, so the surviving rank is the one
    in force for most of the last 1000 of 2500 steps."""
    models, loss_fn = low_rank_task(true_rank)
    arena = low_rank_arena(models)
    optimizer = torch.optim.Adam(arena.trainable_parameters(), lr=1e-2)
    ranks = []
    for step in range(1, 2501):
        train(arena, models, loss_fn, step, step, optimizer=optimizer)
        ranks.append(arena.ranks()["layer.0"])
    assert Counter(ranks[-1000:]).most_common(1)[0][0] == true_rank


def test_a_large_penalty_prunes_every_rank_and_leaves_the_base_model():
    arena, models = regression_arena(l1_penalty=1e6)
    originals = regression_models()
    train(arena, models, regression_loss, 1, 3)
    assert set(arena.ranks().values()) == {0}
    x = torch.randn(8, 16)
    with torch.no_grad():
        for name, model in models.items():
            torch.testing.assert_close(model(x), originals[name](x), rtol=0, atol=0)
    assert all(config is None for config in (arena.to_peft("single"), arena.to_peft("mlp")))


def test_with_gates_fixed_it_trains_exactly_as_lora_of_its_rank():
    """v ≡ 1 (gates not stepped) makes ARENA a LoRA of rank init_rank and scale alpha/rank: step for step the same
    as SeLoRA that never grows (same A init, same scale convention)."""
    arena, arena_models = regression_arena(l1_penalty=0.0)
    lora = SeLoraModel(regression_models(), SeLoraConfig(
        target_modules=prefixed_linear_names(regression_models()), expand_every=10**6, init_rank=4,
        lora_alpha=4.0, init_seed=7))
    lora_models = lora.model
    arena_optimizer = torch.optim.Adam(arena.trainable_parameters(), lr=1e-2)
    lora_optimizer = torch.optim.Adam(lora.trainable_parameters(), lr=1e-2)
    for step in range(1, 16):
        for models, optimizer in ((arena_models, arena_optimizer), (lora_models, lora_optimizer)):
            regression_loss(models, step).backward()
            optimizer.step()
            optimizer.zero_grad()
    x = torch.randn(8, 16)
    with torch.no_grad():
        for name in arena_models:
            torch.testing.assert_close(arena_models[name](x), lora_models[name](x), rtol=0, atol=1e-6)


def test_with_no_penalty_no_rank_is_pruned_and_the_gates_learn():
    arena, models = regression_arena(l1_penalty=0.0)
    first = regression_loss(models, 100).item()
    train(arena, models, regression_loss, 1, 40)
    assert set(arena.ranks().values()) == {4} and len(arena.rank_history) == len(arena.layers)
    assert all((layer.gate != 1).any() for layer in arena.layers.values())
    assert regression_loss(models, 100).item() < 0.75 * first  # it learns (40 steps: about halved)


def test_checkpoint_resume_equals_uninterrupted_run():
    """The checkpoint holds the gates' step counts: a resumed run knows that its warm-up is over."""
    overrides = {"l1_penalty": 3.0, "gate_learning_rate": 0.03, "warmup_steps": 2}
    whole, whole_models = regression_arena(**overrides)
    train(whole, whole_models, regression_loss, 1, 60, lr=5e-2)

    first, first_models = regression_arena(**overrides)
    optimizer = train(first, first_models, regression_loss, 1, 45, lr=5e-2)
    assert sum(first.ranks().values()) < 4 * len(first.layers)  # the checkpoint holds pruned gates
    saved, saved_optimizer = copy.deepcopy(first.state_dict()), copy.deepcopy(optimizer.state_dict())
    resumed, resumed_models = regression_arena(**overrides)
    resumed.load_state_dict(saved)
    optimizer = torch.optim.Adam(resumed.trainable_parameters(), lr=5e-2)
    optimizer.load_state_dict(saved_optimizer)
    train(resumed, resumed_models, regression_loss, 46, 60, optimizer=optimizer)
    assert resumed.ranks() == whole.ranks() and resumed.rank_history == whole.rank_history
    for name, layer in whole.layers.items():
        torch.testing.assert_close(resumed.layers[name].gate, layer.gate, rtol=0, atol=0)
    with pytest.raises(ValueError, match="different ArenaConfig"):
        regression_arena(**(overrides | {"l1_penalty": 1.0}))[0].load_state_dict(saved)


def test_live_ranks_export_to_peft_and_reproduce_the_outputs():
    models = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}
    originals = copy.deepcopy(models)
    arena = ArenaModel(models, ArenaConfig(target_modules=prefixed_linear_names(models), init_rank=3,
                                           l1_penalty=0.0, gate_learning_rate=0.02, lora_alpha=2.0, init_seed=11))
    train(arena, models, diffusion_loss, 1, 4)
    with torch.no_grad():  # zero gates by hand so that layers keep 0, 1, 2 or 3 ranks
        for index, layer in enumerate(arena.layers.values()):
            layer.gate[: index % 4] = 0
    assert {rank for rank in arena.ranks().values()} == {0, 1, 2, 3}
    for key in models:  # layers with no live rank are left out of the export
        config, _ = arena.to_peft(key)
        assert set(config.target_modules) == {name.removeprefix(f"{key}.") for name, layer in arena.layers.items()
                                              if name.startswith(f"{key}.") and layer.rank > 0}
    assert_peft_export_reproduces_outputs(arena, models, originals)


def test_an_adapter_pruned_to_nothing_stops_with_the_setting_to_change(tmp_path):
    from migros.adapters.arena import ArenaAdapter, ArenaSettings
    from migros.adapters.base import MethodConfigError

    pipeline = SimpleNamespace(unet=tiny_unet(), text_encoder=tiny_text_encoder())  # the two submodels it adapts
    settings = ArenaSettings(rank=2, l1_penalty=1e6, gate_learning_rate=0.01, alpha=2, warmup_steps=0)
    adapter = ArenaAdapter(pipeline, settings, seed=0, total_steps=1)
    diffusion_loss({"unet": pipeline.unet, "text_encoder": pipeline.text_encoder}, 1).backward()
    adapter.gate_optimizer.step()
    assert adapter.after_optimizer_step(1, None, torch.optim.Adam(adapter.trainable_parameters(), lr=1e-3)) == {
        name: 0 for name in adapter.ranks()}
    with pytest.raises(MethodConfigError, match=r"too strong for this run \(lower l1_penalty\)"):
        adapter.save_lora(tmp_path)
    assert not any(tmp_path.iterdir())
