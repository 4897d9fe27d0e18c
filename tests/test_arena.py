"""ARENA: the proximal step is soft-thresholding, λ moves ranks between LoRA's and zero, pruned gates stay
pruned, checkpoints resume, and the surviving ranks export to a standard PEFT LoRA."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_models import (
    assert_peft_export_reproduces_outputs, diffusion_loss, prefixed_linear_names, regression_loss, regression_models,
    tiny_text_encoder, tiny_unet,
)

from migros.tuners.arena import ArenaConfig, ArenaLinear, ArenaModel, soft_threshold
from migros.tuners.selora import SeLoraConfig, SeLoraModel

pytestmark = pytest.mark.usefixtures("single_thread")


def regression_arena(**overrides) -> tuple[ArenaModel, dict]:
    models = regression_models()
    settings = {"target_modules": prefixed_linear_names(models), "init_rank": 4, "l1_penalty": 0.0,
                "lora_alpha": 4.0, "init_seed": 7} | overrides
    return ArenaModel(models, ArenaConfig(**settings)), models


def train(arena, models, loss_fn, parameters, first_step, last_step, lr=1e-2) -> torch.optim.Optimizer:
    """The pipeline's loop: an Adam step on the loss, then the proximal step."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    for step in range(first_step, last_step + 1):
        loss_fn(models, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        arena.proximal_step(step, optimizer)
    return optimizer


@pytest.mark.parametrize("overrides", [
    {"target_modules": []}, {"init_rank": 0}, {"l1_penalty": -0.1}, {"l1_penalty": float("nan")},
    {"warmup_steps": -1}, {"lora_alpha": 0}, {"init_seed": 1.5},
])
def test_config_rejects_invalid_values(overrides):
    settings = {"target_modules": ["a"], "init_rank": 2, "l1_penalty": 0.1} | overrides
    with pytest.raises(ValueError):
        ArenaConfig(**settings)


def test_proximal_step_is_soft_thresholding():
    layer = ArenaLinear(torch.nn.Linear(3, 2), rank=6, lora_alpha=1.0, generator=torch.Generator().manual_seed(0))
    gates = np.array([0.9, -0.9, 0.3, -0.3, 0.05, -0.5])
    with torch.no_grad():
        layer.gate.copy_(torch.tensor(gates))
    changed = layer.proximal_step(0.3)
    expected = np.where(gates > 0.3, gates - 0.3, np.where(gates < -0.3, gates + 0.3, 0.0))  # ξ(x, τ) piecewise
    np.testing.assert_allclose(layer.gate.detach().numpy(), expected, atol=1e-7)
    assert changed and layer.rank == 3 and layer.active.tolist() == [True, True, False, False, False, True]
    np.testing.assert_allclose(soft_threshold(torch.tensor(gates), 0.3).numpy(), expected, atol=1e-12)


def test_a_large_penalty_prunes_every_rank_and_leaves_the_base_model():
    arena, models = regression_arena(l1_penalty=1e6)
    originals = regression_models()
    train(arena, models, regression_loss, arena.trainable_parameters(), 1, 3)
    assert set(arena.ranks().values()) == {0}
    x = torch.randn(8, 16)
    with torch.no_grad():
        for name, model in models.items():
            torch.testing.assert_close(model(x), originals[name](x), rtol=0, atol=0)
    assert all(config is None for config in (arena.to_peft("single"), arena.to_peft("mlp")))


def test_with_gates_fixed_it_trains_exactly_as_lora_of_its_rank():
    """v ≡ 1 makes ARENA a LoRA of rank init_rank and scale alpha/rank: step for step the same as SeLoRA that never
    grows (same A init, same scale convention)."""
    arena, arena_models = regression_arena(l1_penalty=0.0)
    lora = SeLoraModel(regression_models(), SeLoraConfig(
        target_modules=prefixed_linear_names(regression_models()), expand_every=10**6, init_rank=4,
        lora_alpha=4.0, init_seed=7))
    lora_models = lora.model
    without_gates = [p for layer in arena.layers.values() for p in (layer.lora_A, layer.lora_B)]
    arena_optimizer = torch.optim.Adam(without_gates, lr=1e-2)
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
    train(arena, models, regression_loss, arena.trainable_parameters(), 1, 40)
    assert set(arena.ranks().values()) == {4} and len(arena.rank_history) == len(arena.layers)
    assert all((layer.gate != 1).any() for layer in arena.layers.values())
    assert regression_loss(models, 100).item() < 0.75 * first  # it learns (40 steps: about halved)


def test_pruned_gates_stay_exactly_zero_and_ranks_only_shrink():
    arena, models = regression_arena(l1_penalty=1.5, warmup_steps=5)
    optimizer = torch.optim.Adam(arena.trainable_parameters(), lr=5e-2)
    pruned_at = {}
    for step in range(1, 61):
        regression_loss(models, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        changed = arena.proximal_step(step, optimizer)
        assert not changed or step > 5  # nothing is pruned during warm-up
        for name, layer in arena.layers.items():
            for index in (~layer.active).nonzero().flatten().tolist():
                pruned_at.setdefault((name, index), step)
                assert layer.gate[index].item() == 0.0  # exactly, though Adam's momentum moves it every step
    # the single layer fits a rank-4 map and keeps its 4 ranks; the MLP's layers need fewer and lose some
    assert arena.ranks()["single.0"] == 4 and 0 < arena.ranks()["mlp.0"] < 4 and 0 < arena.ranks()["mlp.2"] < 4
    assert pruned_at
    for name in arena.layers:
        history = [rank for _, layer, rank in arena.rank_history if layer == name]
        assert history == sorted(history, reverse=True), (name, history)


def test_checkpoint_resume_equals_uninterrupted_run():
    whole, whole_models = regression_arena(l1_penalty=1.5, warmup_steps=2)
    train(whole, whole_models, regression_loss, whole.trainable_parameters(), 1, 60, lr=5e-2)

    first, first_models = regression_arena(l1_penalty=1.5, warmup_steps=2)
    optimizer = train(first, first_models, regression_loss, first.trainable_parameters(), 1, 45, lr=5e-2)
    assert sum(first.ranks().values()) < 4 * len(first.layers)  # the checkpoint holds pruned gates
    saved, saved_optimizer = copy.deepcopy(first.state_dict()), copy.deepcopy(optimizer.state_dict())
    resumed, resumed_models = regression_arena(l1_penalty=1.5, warmup_steps=2)
    resumed.load_state_dict(saved)
    optimizer = torch.optim.Adam(resumed.trainable_parameters(), lr=5e-2)
    optimizer.load_state_dict(saved_optimizer)
    for step in range(46, 61):
        regression_loss(resumed_models, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        resumed.proximal_step(step, optimizer)
    assert resumed.ranks() == whole.ranks() and resumed.rank_history == whole.rank_history
    for name, layer in whole.layers.items():
        torch.testing.assert_close(resumed.layers[name].gate, layer.gate, rtol=0, atol=0)
    with pytest.raises(ValueError, match="different ArenaConfig"):
        regression_arena(l1_penalty=1.0)[0].load_state_dict(saved)


def test_surviving_ranks_export_to_peft_and_reproduce_the_outputs():
    models = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}
    originals = copy.deepcopy(models)
    arena = ArenaModel(models, ArenaConfig(target_modules=prefixed_linear_names(models), init_rank=3,
                                           l1_penalty=0.0, lora_alpha=2.0, init_seed=11))
    train(arena, models, diffusion_loss, arena.trainable_parameters(), 1, 4)
    with torch.no_grad():  # prune by hand so that layers keep 0, 1, 2 or 3 ranks
        for index, layer in enumerate(arena.layers.values()):
            layer.gate[: index % 4] = 0
            layer.proximal_step(0.0)
    assert {rank for rank in arena.ranks().values()} == {0, 1, 2, 3}
    for key in models:  # layers pruned to rank 0 are left out of the export
        config, _ = arena.to_peft(key)
        assert set(config.target_modules) == {name.removeprefix(f"{key}.") for name, layer in arena.layers.items()
                                              if name.startswith(f"{key}.") and layer.rank > 0}
    assert_peft_export_reproduces_outputs(arena, models, originals)


def test_an_adapter_pruned_to_nothing_stops_with_the_setting_to_change(tmp_path):
    from migros.adapters.arena import ArenaAdapter, ArenaSettings
    from migros.adapters.base import MethodConfigError

    pipeline = SimpleNamespace(unet=tiny_unet(), text_encoder=tiny_text_encoder())  # the two submodels it adapts
    adapter = ArenaAdapter(pipeline, ArenaSettings(rank=2, l1_penalty=1e6, alpha=2, warmup_steps=0), seed=0, total_steps=1)
    adapter.after_optimizer_step(1, None, torch.optim.Adam(adapter.trainable_parameters(), lr=1e-3))
    assert set(adapter.ranks().values()) == {0}
    with pytest.raises(MethodConfigError, match=r"too strong for this run \(lower l1_penalty\)"):
        adapter.save_lora(tmp_path)
    assert not any(tmp_path.iterdir())
