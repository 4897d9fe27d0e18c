"""SeLoRA: exact expansions, optimizer state carried over, Fisher-driven growth, checkpoints, PEFT/diffusers export."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from tiny_models import (
    assert_peft_export_reproduces_outputs, diffusion_loss, diffusion_outputs, prefixed_linear_names, regression_batch,
    regression_loss, regression_models, tiny_text_encoder, tiny_unet, tiny_vae,
)
from torch import nn

from migros.tuners.lowrank import linear_module_names, random_a_rows
from migros.tuners.selora import SeLoraConfig, SeLoraLinear, SeLoraModel

pytestmark = pytest.mark.usefixtures("single_thread")


def regression_selora(**overrides) -> tuple[SeLoraModel, dict[str, nn.Module]]:
    models = regression_models()
    targets = prefixed_linear_names(models)
    settings = {"target_modules": targets, "expand_every": 5, "lora_alpha": 4.0, "init_seed": 7} | overrides
    return SeLoraModel(models, SeLoraConfig(**settings)), models


def diffusion_selora(**overrides) -> tuple[SeLoraModel, dict[str, nn.Module]]:
    models = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}
    targets = prefixed_linear_names(models)
    settings = {"target_modules": targets, "expand_every": 2, "lora_alpha": 2.0, "init_seed": 11} | overrides
    return SeLoraModel(models, SeLoraConfig(**settings)), models


def train(selora, models, loss_fn, optimizer, first_step: int, last_step: int) -> None:
    """The loop the pipeline runs: step, then a Fisher trial on that step's batch every expand_every steps."""
    for step in range(first_step, last_step + 1):
        loss_fn(models, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        selora.maybe_expand(step, lambda: loss_fn(models, step), optimizer)


@pytest.fixture(scope="module")
def trained_diffusion():
    """UNet + text encoder trained 6 steps with λ chosen so that per-layer ranks end up different."""
    selora, models = diffusion_selora(expansion_threshold=1.5)
    originals = {"unet": tiny_unet(), "text_encoder": tiny_text_encoder()}
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, diffusion_loss, optimizer, 1, 6)
    return selora, models, originals


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "overrides",
    [
        {"target_modules": []},
        {"target_modules": ["a", "a"]},
        {"init_rank": 0},
        {"max_rank": 0},
        {"expand_every": 0},
        {"expansion_threshold": 0.5},
        {"expansion_threshold": float("nan")},
        {"lora_alpha": 0},
        {"init_seed": 1.5},
    ],
)
def test_config_rejects_invalid_values(overrides):
    with pytest.raises(ValueError):
        SeLoraConfig(**({"target_modules": ["a"], "expand_every": 1} | overrides))


# ---------------------------------------------------------------------------------------------- expansion


def test_expansion_keeps_output_and_rescales_b():
    selora, models = regression_selora()
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, regression_loss, optimizer, 1, 3)  # B non-zero before expanding
    x, _ = regression_batch(0)
    with torch.no_grad():
        before = {key: model(x) for key, model in models.items()}
    layer = selora.layers["single.0"]
    old_b = layer.lora_B.detach().clone()
    selora.expand(list(selora.layers), step=3, optimizer=optimizer)
    selora.expand(["single.0"], step=3, optimizer=optimizer)
    with torch.no_grad():
        for key, model in models.items():
            torch.testing.assert_close(model(x), before[key], rtol=1e-6, atol=1e-6)
    assert layer.rank == 3 and layer.scaling == pytest.approx(4.0 / 3)
    torch.testing.assert_close(layer.lora_B[:, :1], old_b * 3.0, rtol=1e-6, atol=0)
    assert torch.count_nonzero(layer.lora_B[:, 1:]) == 0


def test_expansion_carries_adam_state_over():
    selora, models = regression_selora()
    params = selora.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=1e-2)
    train(selora, models, regression_loss, optimizer, 1, 4)
    layer = selora.layers["mlp.0"]
    before = {id(p): {k: v.clone() for k, v in optimizer.state[p].items()} for p in (layer.lora_A, layer.lora_B)}
    unexpanded_selora, unexpanded_models, unexpanded_optimizer = copy.deepcopy((selora, models, optimizer))
    selora.expand(["mlp.0"], step=4, optimizer=optimizer)

    a_state, b_state = optimizer.state[layer.lora_A], optimizer.state[layer.lora_B]
    old_a, old_b = before[id(layer.lora_A)], before[id(layer.lora_B)]
    assert torch.equal(a_state["exp_avg"][:1], old_a["exp_avg"])
    assert torch.equal(a_state["exp_avg_sq"][:1], old_a["exp_avg_sq"])
    c = 2.0  # rank 1 -> 2: B's old column is multiplied by c, its gradient by 1/c
    torch.testing.assert_close(b_state["exp_avg"][:, :1], old_b["exp_avg"] / c, rtol=1e-6, atol=0)
    torch.testing.assert_close(b_state["exp_avg_sq"][:, :1], old_b["exp_avg_sq"] / c**2, rtol=1e-6, atol=0)
    for state, dim in ((a_state, 0), (b_state, 1)):
        assert state["exp_avg"].shape == state["exp_avg_sq"].shape
        assert torch.count_nonzero(state["exp_avg"].narrow(dim, 1, 1)) == 0
        assert torch.count_nonzero(state["exp_avg_sq"].narrow(dim, 1, 1)) == 0
    assert torch.equal(a_state["step"], old_a["step"]) and torch.equal(b_state["step"], old_b["step"])

    # With the moments carried over as the gradients scale, the next Adam update of the old entries (in
    # parameter units) is the one the unexpanded copy of the run makes.
    unexpanded_layer = unexpanded_selora.layers["mlp.0"]
    a0, b0 = layer.lora_A.detach().clone(), layer.lora_B.detach().clone()
    ua0, ub0 = unexpanded_layer.lora_A.detach().clone(), unexpanded_layer.lora_B.detach().clone()
    for run_models, run_optimizer in ((models, optimizer), (unexpanded_models, unexpanded_optimizer)):
        regression_loss(run_models, 5).backward()
        run_optimizer.step()
        run_optimizer.zero_grad()
    torch.testing.assert_close(layer.lora_B[:, :1] - b0[:, :1], unexpanded_layer.lora_B - ub0, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(layer.lora_A[:1] - a0[:1], unexpanded_layer.lora_A - ua0, rtol=1e-4, atol=1e-7)
    train(selora, models, regression_loss, optimizer, 6, 12)  # and training goes on, expanding further
    assert all(p.shape == optimizer.state[p]["exp_avg"].shape for p in params)


def test_unknown_optimizer_state_is_not_dropped_silently():
    selora, models = regression_selora()
    optimizer = torch.optim.Adagrad(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, regression_loss, optimizer, 1, 2)
    with pytest.raises(ValueError, match="'sum'"):
        selora.expand(["mlp.0"], step=2, optimizer=optimizer)
    assert selora.ranks()["mlp.0"] == 1  # refused before anything grew


def test_fisher_trial_uses_ratio_of_rank_r_plus_one_over_rank_r():
    """The decision equals a brute-force FI(r+1)/FI(r) ≥ λ with an explicit rank r+1 adapter at the rank-r scale."""
    step = 5
    selora, models = regression_selora(expand_every=step, target_modules=["single.0"])
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, regression_loss, optimizer, 1, step - 1)
    layer = selora.layers["single.0"]
    generator = torch.Generator()
    generator.set_state(selora.generator.get_state())
    a = torch.cat((layer.lora_A.detach(), random_a_rows(1, 16, generator, layer.lora_A))).requires_grad_()
    b = F.pad(layer.lora_B.detach(), (0, 1)).requires_grad_()
    x, y = regression_batch(step)
    prediction = layer.base_layer(x) + layer.scaling * (x @ a.T) @ b.T
    loss = F.mse_loss(prediction, y) + F.mse_loss(models["mlp"](x), y)
    grad_a, grad_b = torch.autograd.grad(loss, (a, b))
    fisher_r = grad_a[:1].square().sum() + grad_b[:, :1].square().sum()
    fisher_r1 = grad_a.square().sum() + grad_b.square().sum()
    ratio = (fisher_r1 / fisher_r).item()
    assert ratio > 1.0

    for threshold, expands in ((ratio * (1 - 1e-4), True), (ratio * (1 + 1e-4), False)):
        trial, trial_models = copy.deepcopy((selora, models))
        trial.config.expansion_threshold = threshold
        grown = trial.maybe_expand(step, lambda: regression_loss(trial_models, step), None)
        assert grown == ({"single.0": 2} if expands else {})


def test_ranks_grow_with_lambda_one_and_stay_with_huge_lambda():
    final_ranks = {}
    for threshold in (1.0, 1e9):
        selora, models = regression_selora(expansion_threshold=threshold)
        optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
        train(selora, models, regression_loss, optimizer, 1, 30)
        final_ranks[threshold] = selora.ranks()
    assert all(rank > 1 for rank in final_ranks[1.0].values())
    assert all(rank == 1 for rank in final_ranks[1e9].values())


def test_max_rank_is_respected():
    selora, models = regression_selora(expand_every=1, max_rank=3)
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, regression_loss, optimizer, 1, 10)
    assert set(selora.ranks().values()) == {3}
    with pytest.raises(ValueError, match="max_rank"):
        selora.expand(["single.0"], step=10, optimizer=optimizer)


def test_trial_leaves_gradients_and_weights_untouched():
    selora, models = regression_selora(expansion_threshold=1e9)
    regression_loss(models, 1).backward()
    grads = [p.grad.clone() for p in selora.trainable_parameters()]
    weights = [p.detach().clone() for p in selora.trainable_parameters()]
    assert selora.maybe_expand(5, lambda: regression_loss(models, 2), None) == {}
    assert all(torch.equal(p.grad, g) for p, g in zip(selora.trainable_parameters(), grads))
    assert all(torch.equal(p, w) for p, w in zip(selora.trainable_parameters(), weights))


def test_low_precision_base_with_float32_adapter():
    """As diffusers trains in mixed precision: half-precision base, adapters upcast to float32, autocast on."""
    selora, models = regression_selora()
    for model in models.values():
        model.to(torch.bfloat16)
    for param in selora.trainable_parameters():
        param.data = param.data.float()
    x, y = regression_batch(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = models["mlp"](x.to(torch.bfloat16))
    assert output.dtype == torch.bfloat16
    F.mse_loss(output.float(), y).backward()
    assert selora.layers["mlp.0"].lora_B.grad.dtype == torch.float32
    selora.expand(["mlp.0"], step=1, optimizer=None)
    assert selora.layers["mlp.0"].lora_A.dtype == torch.float32 and selora.layers["mlp.0"].lora_B.grad.shape == (32, 2)


# ---------------------------------------------------------------------------------------------- injection


def test_every_linear_of_unet_and_text_encoder_is_adapted():
    selora, models = diffusion_selora()
    expected = [f"unet.{n}" for n in linear_module_names(tiny_unet())]
    expected += [f"text_encoder.{n}" for n in linear_module_names(tiny_text_encoder())]
    assert list(selora.layers) == expected
    for must_have in ("time_embedding.linear_1", "attn1.to_out.0", "ff.net.2", "time_emb_proj"):
        assert any(name.endswith(must_have) for name in expected), must_have
    for key, model in models.items():
        modules = dict(model.named_modules())
        adapted = [name.removeprefix(f"{key}.") for name in expected if name.startswith(f"{key}.")]
        assert adapted and all(isinstance(modules[name], SeLoraLinear) for name in adapted)
        assert all(name.endswith("base_layer") for name in linear_module_names(model))
    trainable = [p for model in models.values() for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in selora.trainable_parameters()}


def test_wrong_targets_raise():
    unet = tiny_unet()
    with pytest.raises(ValueError, match="not found"):
        SeLoraModel(unet, SeLoraConfig(target_modules=["time_embedding.linear_9"], expand_every=1))
    with pytest.raises(TypeError, match="nn.Linear"):
        SeLoraModel(unet, SeLoraConfig(target_modules=["conv_in"], expand_every=1))
    with pytest.raises(ValueError, match="whole model"):
        SeLoraModel({"head": nn.Linear(2, 2)}, SeLoraConfig(target_modules=["head"], expand_every=1))


# ---------------------------------------------------------------------------------------------- export


def test_rank_history_matches_final_adapter(trained_diffusion):
    selora, _, _ = trained_diffusion
    ranks = selora.ranks()
    assert len(set(ranks.values())) > 1, "the fixture should leave layers at different ranks"
    history = selora.rank_history
    assert [(step, rank) for step, _, rank in history[: len(ranks)]] == [(0, 1)] * len(ranks)
    last = {}
    for step, name, rank in history:
        assert rank == last.get(name, 0) + 1
        last[name] = rank
    assert last == ranks
    for key in ("unet", "text_encoder"):
        config, state = selora.to_peft(key)
        for name, layer in selora.layers.items():
            if not name.startswith(f"{key}."):
                continue
            short = name.removeprefix(f"{key}.")
            exported = config.rank_pattern.get(short, config.r)
            assert exported == ranks[name] == layer.lora_A.shape[0] == layer.lora_B.shape[1]
            assert state[f"{short}.lora_A.weight"].shape == layer.lora_A.shape


def test_export_keys_match_peft(trained_diffusion):
    selora, _, _ = trained_diffusion
    for key, fresh in (("unet", tiny_unet()), ("text_encoder", tiny_text_encoder())):
        _, state = selora.to_peft(key)
        inject_adapter_in_model(LoraConfig(r=2, target_modules=linear_module_names(fresh)), fresh)
        assert set(state) == set(get_peft_model_state_dict(fresh))


def test_export_round_trip_through_peft(trained_diffusion):
    selora, models, originals = trained_diffusion
    assert_peft_export_reproduces_outputs(selora, models, originals)


@pytest.mark.parametrize("with_metadata", [False, True])
def test_stock_pipeline_loads_exported_adapter(trained_diffusion, tmp_path, with_metadata):
    selora, models, originals = trained_diffusion
    fresh = copy.deepcopy(originals)
    pipeline = StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=fresh["text_encoder"],
        tokenizer=None,
        unet=fresh["unet"],
        scheduler=DDPMScheduler(clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    (unet_config, unet_state), (text_config, text_state) = selora.to_peft("unet"), selora.to_peft("text_encoder")
    metadata = {
        "unet_lora_adapter_metadata": unet_config.to_dict(),
        "text_encoder_lora_adapter_metadata": text_config.to_dict(),
    }
    StableDiffusionPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=unet_state,
        text_encoder_lora_layers=text_state,
        **(metadata if with_metadata else {}),
    )
    pipeline.load_lora_weights(tmp_path)
    with torch.no_grad():
        expected = diffusion_outputs(models["unet"], models["text_encoder"], 51)
        actual = diffusion_outputs(pipeline.unet, pipeline.text_encoder, 51)
    for exp, act in zip(expected, actual):
        torch.testing.assert_close(act, exp, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- resuming, determinism


def test_checkpoint_resume_equals_uninterrupted_run():
    selora, models = diffusion_selora(expansion_threshold=1.2)
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    train(selora, models, diffusion_loss, optimizer, 1, 4)
    buffer = io.BytesIO()
    torch.save({"selora": selora.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    train(selora, models, diffusion_loss, optimizer, 5, 8)

    buffer.seek(0)
    checkpoint = torch.load(buffer)
    resumed, resumed_models = diffusion_selora(expansion_threshold=1.2)
    resumed.load_state_dict(checkpoint["selora"])
    resumed_optimizer = torch.optim.Adam(resumed.trainable_parameters(), lr=1e-2)
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    train(resumed, resumed_models, diffusion_loss, resumed_optimizer, 5, 8)

    assert max(checkpoint["selora"]["ranks"].values()) > 1
    assert resumed.ranks() == selora.ranks() and resumed.rank_history == selora.rank_history
    for p, q in zip(selora.trainable_parameters(), resumed.trainable_parameters()):
        assert torch.equal(p, q)
        assert torch.equal(optimizer.state[p]["exp_avg_sq"], resumed_optimizer.state[q]["exp_avg_sq"])


def test_checkpoint_rejects_other_config():
    selora, _ = regression_selora()
    other, _ = regression_selora(lora_alpha=8.0)
    with pytest.raises(ValueError, match="lora_alpha"):
        other.load_state_dict(selora.state_dict())


def test_same_seeds_give_same_run():
    runs = []
    for _ in range(2):
        selora, models = regression_selora(expansion_threshold=1.02)
        optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
        train(selora, models, regression_loss, optimizer, 1, 20)
        runs.append((selora.ranks(), [p.detach() for p in selora.trainable_parameters()]))
    assert runs[0][0] == runs[1][0] and max(runs[0][0].values()) > 1
    assert all(torch.equal(p, q) for p, q in zip(runs[0][1], runs[1][1]))
