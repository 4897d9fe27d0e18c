"""Fine-tuning and generation on a tiny SD-architecture pipeline (random weights: behaviour, not quality)."""

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from migros.adapters import build_adapter
from migros.devices import DeviceError, autocast_dtype
from migros.diffusion.base_model import BaseModelSettings, load_pipeline, prepare_base_model
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.finetune import (
    TrainingSettings, finetune, load_images, run_finetune_stage, scaled_optimizer_step, training_steps,
)
from migros.diffusion.generate import generate_images
from migros.diffusion.privacy_defence import DefenceSettings
from migros.diffusion.reconstruct import reconstruct, run_reconstruction_stage
from migros.diffusion.probe import PROBE_FILE, AdapterReloadError, check_reload, probe_output, reload_error, save_probe
from migros.report.metrics import FINETUNE_METRICS, summary_rows
from migros.tuners.arena import ArenaConfig, ArenaModel
from migros.tuners.selora import SeLoraConfig, SeLoraModel

SIZE = 32
SELORA = {"kind": "selora", "threshold": 1.0, "expand_every": 2, "max_rank": 3, "alpha": 1, "init_rank": 1}
LORA = {"kind": "lora", "rank": 2, "alpha": 2}
ARENA = {"kind": "arena", "rank": 3, "l1_penalty": 3e-5, "gate_learning_rate": 250, "alpha": 3, "warmup_steps": 2}
# Prunes some ranks within the 9 steps of these runs: the gates' gradients are about 1e-5 to 1e-4 (as on the demo),
# and a gate that the loss pulls less than λ loses up to ρλ = 0.2 a step after warm-up.
PRUNING_ARENA = {**ARENA, "l1_penalty": 5e-5, "gate_learning_rate": 4000}
ADALORA = {"kind": "adalora", "init_r": 4, "target_r": 2, "tinit": 1, "tfinal": 2, "deltaT": 1, "alpha": 4,
           "orth_reg_weight": 0.5}
PRIVATE_LORA = {**LORA, "privacy": {
    "defence": "stable_privatelora", "alpha": 1.0, "beta": 1.0, "proxy_steps": 2, "proxy_batch_size": 2,
    "proxy_learning_rate": 1e-3, "proxy_weight_decay": 1e-4, "proxy_hidden": [16], "proxy_dropout": 0.5}}
SETTINGS = TrainingSettings.from_config({"epochs": 3, "batch_size": 2, "learning_rate": 1e-3, "adam_betas": [0.9, 0.999],
                                        "seed": 5, "checkpoint_every": 2, "mixed_precision": "auto"})
STEPS = training_steps(6, SETTINGS)  # the 6 training slices of `train_prompts`


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    pipeline = build_demo_pipeline(image_size=SIZE, vae_channels=(8, 8, 16, 16), unet_channels=(16, 32),
                                   text_hidden_size=32, norm_groups=4, seed=0)
    pipeline.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def train_prompts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8)).save(path)
        prompt = "Brain MRI Flair, healthy" if i % 2 else "Brain MRI Flair, with small tumour on the top left"
        rows.append({"image": str(path), "prompt": prompt, "label": 1 - i % 2})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def proxy_non_members(train_prompts, tmp_path_factory):
    """4 other slices, for the proxy attack model of PRIVATE_LORA."""
    folder = tmp_path_factory.mktemp("unused")
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8)).save(folder / f"{i}.png")
    return train_prompts.head(4).assign(image=[str(folder / f"{i}.png") for i in range(4)])


def train(base_dir, train_prompts, method, checkpoint_dir, stop_after_step=None, proxy_non_members=None):
    pipeline = load_pipeline(base_dir)
    adapter = build_adapter(pipeline, method, seed=SETTINGS.seed, total_steps=STEPS)
    result = finetune(pipeline, adapter, train_prompts, SETTINGS, method, checkpoint_dir, SIZE, stop_after_step,
                      defence=DefenceSettings.from_method(method, "m"), proxy_non_members=proxy_non_members)
    return pipeline, adapter, result


def sample(pipeline, out_dir, seeds=(11, 12, 13), batch_size=3):
    prompts = pd.DataFrame({"index": range(len(seeds)), "prompt": ["Brain MRI Flair, healthy"] * len(seeds),
                            "label": 0, "seed": list(seeds)})
    manifest = generate_images(pipeline, prompts, out_dir, SIZE, steps=3, guidance_scale=3.0, batch_size=batch_size)
    return np.stack([np.asarray(Image.open(path), np.float32) for path in manifest.file])


@pytest.fixture(scope="module")
def prepared_base_dir(base_dir, tmp_path_factory):
    """`base_dir` as the base_model rule records a local model (the demo settings go unused)."""
    folder = tmp_path_factory.mktemp("prepared") / "base_model"
    demo = {"image_size": SIZE, "seed": 0, "corpus_size": 1, "vae_steps": 1, "unet_steps": 1, "latent_downsampling": 8}
    prepare_base_model(BaseModelSettings.from_config({"source": str(base_dir), "demo": demo}), folder)
    return folder


@pytest.mark.parametrize("method", [SELORA, LORA, PRUNING_ARENA, ADALORA], ids=["selora", "lora", "arena", "adalora"])
def test_the_reported_adapter_size_is_what_was_exported(prepared_base_dir, train_prompts, tmp_path, method):
    """The adapter table's parameters are the exported tensors' elements, for ARENA and AdaLoRA the ranks that
    survived pruning, not those they started with; the rank history ends at the same size and ranks."""
    train_prompts.to_csv(tmp_path / "train_prompts.csv", index=False)
    run_finetune_stage(prepared_base_dir, tmp_path / "train_prompts.csv", "m", method, SETTINGS, SIZE,
                       tmp_path / "ckpt", tmp_path / "adapter", tmp_path / "loss.csv", tmp_path / "rank_history.csv",
                       tmp_path / "summary.json")
    weights = load_file(tmp_path / "adapter/pytorch_lora_weights.safetensors")
    exported = sum(tensor.numel() for tensor in weights.values())
    reported = {row["metric"]: row["value"]
                for row in summary_rows("d", "m", tmp_path / "summary.json", FINETUNE_METRICS)}
    assert reported["trainable_parameters"] == exported
    history = pd.read_csv(tmp_path / "rank_history.csv")
    final = history.sort_values("step", kind="stable").groupby("layer").last()
    initial = history[history.step == 0]
    assert final["parameters"].sum() == exported
    assert reported["final_rank_total"] == final["rank"].sum() and reported["final_rank_max"] == final["rank"].max()
    if method["kind"] in ("arena", "adalora"):  # these runs prune: the export is smaller than the initial ranks
        assert exported < initial["parameters"].sum()


@pytest.mark.parametrize("method", [SELORA, LORA, ARENA, ADALORA], ids=["selora", "lora", "arena", "adalora"])
def test_exported_adapter_reproduces_training_time_images(base_dir, train_prompts, tmp_path, method):
    pipeline, adapter, _ = train(base_dir, train_prompts, method, tmp_path / "ckpt")
    if method["kind"] == "selora":
        assert len(set(adapter.ranks().values())) > 1 or max(adapter.ranks().values()) > 1
    if method["kind"] == "arena":  # 9 steps prune nothing: zero gates by hand, so layers keep 3, 2, 1 or 0 ranks
        with torch.no_grad():
            for index, layer in enumerate(adapter.tuner.layers.values()):
                layer.gate[: index % 4] = 0
        assert set(adapter.ranks().values()) == {0, 1, 2, 3}
    if method["kind"] == "adalora":  # pruned to the budget: 2 ranks per layer on average, more in some layers
        ranks = adapter.ranks().values()
        assert sum(ranks) <= 2 * len(ranks) and len(set(ranks)) > 1
        # E starts at zero: 9 steps leave the images as they were. Give the kept ranks singular values of a
        # trained adapter's size (pruned ones stay 0, as AdaLoRA leaves them), so the round trip is visible.
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, keep in adapter.kept().items():
                e = adapter.layers[name].lora_E["default"]
                e[keep] = torch.randn(int(keep.sum()), 1, generator=generator)
    trained = sample(pipeline, tmp_path / "trained")
    adapter.save_lora(tmp_path / "adapter")
    fresh = load_pipeline(base_dir)
    untouched = sample(fresh, tmp_path / "base")
    fresh.load_lora_weights(tmp_path / "adapter")
    loaded = sample(fresh, tmp_path / "loaded")
    assert np.abs(loaded - trained).max() <= 1.0  # 8-bit PNGs: at most one grey level apart
    assert np.abs(untouched - trained).max() > 1.0  # the adapter changes the images
    # The generate stage merges the adapter into the base weights (per-layer ranks included) before sampling.
    fresh.fuse_lora()
    fresh.unload_lora_weights()
    fused = sample(fresh, tmp_path / "fused")
    assert np.abs(fused - trained).max() <= 1.0


def test_same_seed_gives_identical_adapters_and_images(base_dir, train_prompts, tmp_path):
    runs = [train(base_dir, train_prompts, SELORA, tmp_path / f"ckpt{i}") for i in range(2)]
    (_, first, a), (_, second, b) = runs
    assert first.ranks() == second.ranks()
    for key, value in first.state_dict()["weights"].items():
        assert torch.equal(value, second.state_dict()["weights"][key]), key
    pd.testing.assert_frame_equal(a["losses"], b["losses"])
    assert np.array_equal(sample(runs[0][0], tmp_path / "i0"), sample(runs[1][0], tmp_path / "i1"))


@pytest.mark.parametrize("method", [SELORA, LORA, ARENA, ADALORA], ids=["selora", "lora", "arena", "adalora"])
def test_resumed_run_ends_where_an_uninterrupted_run_ends(base_dir, train_prompts, tmp_path, method):
    _, uninterrupted, full = train(base_dir, train_prompts, method, tmp_path / "full")
    _, _, partial = train(base_dir, train_prompts, method, tmp_path / "resumed", stop_after_step=4)
    assert len(partial["losses"]) == 4
    _, resumed, rest = train(base_dir, train_prompts, method, tmp_path / "resumed")
    assert rest["summary"]["resumed_from_step"] == 4
    pd.testing.assert_frame_equal(full["losses"], rest["losses"])
    expected, actual = uninterrupted.state_dict(), resumed.state_dict()
    if method["kind"] == "lora":
        expected = {f"{m}.{k}": v for m, part in expected.items() for k, v in part.items()}
        actual = {f"{m}.{k}": v for m, part in actual.items() for k, v in part.items()}
    else:  # SeLoRA and ARENA: ranks change during training
        assert expected["rank_history"] == actual["rank_history"]
        expected, actual = expected["weights"], actual["weights"]
    for key, value in expected.items():
        assert torch.allclose(value, actual[key], atol=1e-7), key


def test_privacy_defence_trains_a_proxy_changes_the_adapter_and_resumes_exactly(
        base_dir, train_prompts, proxy_non_members, tmp_path):
    _, plain, _ = train(base_dir, train_prompts, LORA, tmp_path / "plain")
    _, defended, full = train(base_dir, train_prompts, PRIVATE_LORA, tmp_path / "full", proxy_non_members=proxy_non_members)
    assert full["summary"]["privacy_defence"] == "stable_privatelora" and full["summary"]["proxy_non_members"] == 4
    log = full["losses"]
    assert len(log) == STEPS and log[["proxy_member_loss", "proxy_loss"]].gt(0).all().all()
    # Weight 0 (beta 1): the objective is the loss itself, so the proxy, trained all the same, leaves the adapter
    # bit for bit as without the defence; a non-zero weight moves every adapted matrix.
    unweighted = {**PRIVATE_LORA, "privacy": {**PRIVATE_LORA["privacy"], "alpha": 0.0}}
    _, zero_weight, _ = train(base_dir, train_prompts, unweighted, tmp_path / "zero", proxy_non_members=proxy_non_members)
    weights = {name: [(key, value) for part in adapter.state_dict().values() for key, value in part.items()]
               for name, adapter in (("plain", plain), ("zero weight", zero_weight), ("defended", defended))}
    assert all(torch.equal(value, other) for (_, value), (_, other) in zip(weights["plain"], weights["zero weight"]))
    moved = [not torch.equal(value, other) for (key, value), (_, other) in zip(weights["plain"], weights["defended"])
             if "lora_B" in key]
    assert all(moved)
    train(base_dir, train_prompts, PRIVATE_LORA, tmp_path / "resumed", stop_after_step=4,
          proxy_non_members=proxy_non_members)
    _, resumed, rest = train(base_dir, train_prompts, PRIVATE_LORA, tmp_path / "resumed",
                             proxy_non_members=proxy_non_members)
    assert rest["summary"]["resumed_from_step"] == 4
    pd.testing.assert_frame_equal(full["losses"], rest["losses"])  # the proxy's state came back with the adapter's
    for key, value in defended.state_dict()["unet"].items():
        assert torch.allclose(value, resumed.state_dict()["unet"][key], atol=1e-7), key
    with pytest.raises(ValueError, match="non-members of its proxy"):
        train(base_dir, train_prompts, PRIVATE_LORA, tmp_path / "none")


def test_checkpoint_of_other_settings_is_not_resumed(base_dir, train_prompts, tmp_path):
    train(base_dir, train_prompts, SELORA, tmp_path / "ckpt", stop_after_step=2)
    _, _, result = train(base_dir, train_prompts, {**SELORA, "threshold": 1.5}, tmp_path / "ckpt")
    assert result["summary"]["resumed_from_step"] == 0


def test_vae_reconstructions_of_a_split_are_the_decoded_posterior_means(base_dir, train_prompts, tmp_path):
    metadata = train_prompts.assign(split=["train", "test"] * 3)
    metadata.to_csv(tmp_path / "metadata.csv", index=False)
    # as the base_model rule records a local model (the demo settings go unused)
    demo = {"image_size": SIZE, "seed": 0, "corpus_size": 1, "vae_steps": 1, "unet_steps": 1, "latent_downsampling": 8}
    prepare_base_model(BaseModelSettings.from_config({"source": str(base_dir), "demo": demo}), tmp_path / "base_model")
    run_reconstruction_stage(tmp_path / "base_model", tmp_path / "metadata.csv", "test", SIZE, tmp_path / "images",
                             tmp_path / "manifest.csv")
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    test_rows = metadata[metadata.split == "test"]
    assert manifest.source_image.tolist() == test_rows.image.tolist()
    assert manifest.label.tolist() == test_rows.label.tolist()
    written = np.stack([np.asarray(Image.open(path)) for path in manifest.file])
    assert written.shape == (3, SIZE, SIZE) and written.dtype == np.uint8
    expected = reconstruct(load_pipeline(base_dir), load_images(test_rows.image.tolist(), SIZE)).mean(1)
    np.testing.assert_allclose(written, ((expected + 1) * 127.5).round().numpy(), atol=1)
    originals = np.stack([np.asarray(Image.open(path)) for path in test_rows.image])
    assert np.abs(written.astype(float) - originals).mean() > 1  # a random VAE does change the images


def test_any_subset_of_images_regenerates_identically(base_dir, tmp_path):
    pipeline = load_pipeline(base_dir)
    everything = sample(pipeline, tmp_path / "all", seeds=(21, 22, 23, 24), batch_size=4)
    subset = sample(pipeline, tmp_path / "subset", seeds=(23,), batch_size=1)
    assert np.array_equal(everything[2], subset[0])


def test_bf16_autocast_on_the_cpu_trains_and_grows_selora(base_dir, train_prompts, tmp_path):
    """The CPU runs the mixed-precision code path of the GPU (autocast, scaled trial losses) in bf16."""
    pipeline = load_pipeline(base_dir)
    adapter = build_adapter(pipeline, SELORA, seed=SETTINGS.seed, total_steps=STEPS)
    bf16 = dataclasses.replace(SETTINGS, mixed_precision="bf16")
    result = finetune(pipeline, adapter, train_prompts, bf16, SELORA, tmp_path / "bf16", SIZE)
    _, _, fp32 = train(base_dir, train_prompts, SELORA, tmp_path / "fp32")
    assert result["summary"]["mixed_precision"] == "bfloat16" and fp32["summary"]["mixed_precision"] == "no"
    assert np.isfinite(result["losses"].loss).all() and result["summary"]["skipped_steps"] == 0
    assert not np.allclose(result["losses"].loss, fp32["losses"].loss, rtol=1e-6)  # autocast really ran
    assert max(adapter.ranks().values()) > 1
    assert all(p.dtype == torch.float32 for p in adapter.trainable_parameters())


def test_fp16_on_the_cpu_is_an_error_not_a_silent_change(base_dir, train_prompts, tmp_path):
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    pipeline = load_pipeline(base_dir)
    adapter = build_adapter(pipeline, LORA, seed=0, total_steps=STEPS)
    with pytest.raises(DeviceError, match="fp16 needs a CUDA GPU"):
        finetune(pipeline, adapter, train_prompts, dataclasses.replace(SETTINGS, mixed_precision="fp16"), LORA,
                 tmp_path / "ckpt", SIZE)


def test_a_step_the_gradient_scaler_skips_neither_triggers_nor_corrupts_an_expansion():
    """fp16 overflow, played on the CPU with an enabled GradScaler: the skipped step leaves weights, Adam state
    and ranks alone and defers the due trial; an overflowing trial grows nothing; the next good step grows."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    selora = SeLoraModel(model, SeLoraConfig(target_modules=["0", "2"], expand_every=1, expansion_threshold=1.0))
    optimizer = torch.optim.Adam(selora.trainable_parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    inputs, targets = torch.randn(8, 6), torch.randn(8, 4)

    def loss(blow_up=False):
        value = torch.nn.functional.mse_loss(model(inputs), targets)
        return value * float("inf") if blow_up else value

    def weights():
        return [p.detach().clone() for p in selora.trainable_parameters()]

    def train_step(step, blow_up=False, trial_blows_up=False):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss(blow_up)).backward()
        stepped = scaled_optimizer_step(scaler, optimizer)
        return stepped, selora.maybe_expand(step, lambda: scaler.scale(loss(trial_blows_up)), optimizer, stepped)

    assert train_step(1) == (True, {"0": 2, "2": 2})
    before, adam_before = weights(), {id(p): dict(optimizer.state[p]) for p in selora.trainable_parameters()}
    stepped, grown = train_step(2, blow_up=True)
    assert not stepped and grown == {} and selora.trial_due and selora.ranks() == {"0": 2, "2": 2}
    assert all(torch.equal(a, b) for a, b in zip(before, weights()))
    for p in selora.trainable_parameters():
        assert all(torch.equal(value, adam_before[id(p)][key]) for key, value in optimizer.state[p].items())
    stepped, grown = train_step(3, trial_blows_up=True)
    assert stepped and grown == {} and selora.trial_due  # gradients of the trial overflowed: nothing grows
    stepped, grown = train_step(4)
    assert stepped and grown == {"0": 3, "2": 3} and not selora.trial_due
    assert [step for step, _, _ in selora.rank_history] == [0, 0, 1, 1, 4, 4]


def test_the_gates_step_through_the_gradient_scaler_unscaled_and_not_on_an_overflow():
    """ARENA's gates have their own optimizer beside Adam, stepped through the same gradient scaler (fp16 played on
    the CPU): their steps are those of a run without scaling, and a step whose gradients overflow leaves them."""
    def arena_mlp():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
        arena = ArenaModel(model, ArenaConfig(target_modules=["0", "2"], init_rank=2, l1_penalty=0.1,
                                              gate_learning_rate=0.5, lora_alpha=2.0))
        return model, arena, torch.optim.Adam(arena.trainable_parameters(), lr=1e-1)

    inputs, targets = torch.randn(8, 6), torch.randn(8, 4)
    scaled, unscaled = arena_mlp(), arena_mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)

    def scaled_step(blow_up=False):
        model, arena, adam = scaled
        for optimizer in (adam, arena.gate_optimizer):
            optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        scaler.scale(loss * float("inf") if blow_up else loss).backward()
        return scaled_optimizer_step(scaler, adam, arena.gate_optimizer)

    def gates(arena):
        return torch.cat([layer.gate.detach().clone() for layer in arena.layers.values()])

    for _ in range(4):  # B starts at zero: from the second step on the gates have gradients
        assert scaled_step()
        model, arena, adam = unscaled
        torch.nn.functional.mse_loss(model(inputs), targets).backward()
        adam.step()
        arena.gate_optimizer.step()
        adam.zero_grad()
        arena.gate_optimizer.zero_grad()
        torch.testing.assert_close(gates(scaled[1]), gates(arena))
    assert not torch.equal(gates(arena), torch.ones(4))  # they moved
    before = gates(scaled[1])
    assert not scaled_step(blow_up=True)
    assert torch.equal(gates(scaled[1]), before)


def test_reload_check_passes_the_exported_adapter_and_stops_one_that_lost_layers(base_dir, train_prompts, tmp_path):
    pipeline = load_pipeline(base_dir)
    adapter = build_adapter(pipeline, SELORA, seed=SETTINGS.seed, total_steps=STEPS)
    prompt = train_prompts.prompt.iloc[0]
    base_output = probe_output(pipeline, prompt, SIZE)
    finetune(pipeline, adapter, train_prompts, SETTINGS, SELORA, tmp_path / "ckpt", SIZE)
    intact, damaged = tmp_path / "intact", tmp_path / "damaged"
    adapter.save_lora(intact)
    save_probe(intact / PROBE_FILE, prompt, SIZE, base_output, probe_output(pipeline, prompt, SIZE))
    damaged.mkdir()
    shutil.copy(intact / PROBE_FILE, damaged / PROBE_FILE)
    weights = load_file(intact / "pytorch_lora_weights.safetensors")
    lost = [key for key in weights if ".mid_block." in key]  # as if the mid block's layers had not been exported
    assert lost
    save_file({key: value for key, value in weights.items() if key not in lost}, damaged / "pytorch_lora_weights.safetensors",
              metadata=safe_open(intact / "pytorch_lora_weights.safetensors", "pt").metadata())

    fresh = load_pipeline(base_dir)
    fresh.load_lora_weights(intact)
    check_reload(fresh, intact)
    assert reload_error(fresh, intact / PROBE_FILE) < 1e-3
    fresh = load_pipeline(base_dir)
    fresh.load_lora_weights(damaged)
    with pytest.raises(AdapterReloadError, match="does not reproduce its training-time output"):
        check_reload(fresh, damaged)
