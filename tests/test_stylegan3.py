"""The StyleGAN3 baseline without the official code or a GPU: the command lines it builds, the labelled dataset
folder that dataset_tool.py reads, the final snapshot it picks, the images and manifest it collects, and the errors
that stop it before any work."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from migros.gan import stylegan3
from migros.gan.stylegan3 import (
    StyleGan3Error, StyleGan3Settings, collect_generated, dataset_tool_command, final_snapshot, generate_command,
    kimg_for, require_checkout, require_resolution, run_stylegan3_stage, seeds_by_class, train_command,
    write_dataset_source,
)
from migros.report.metrics import SUMMARY_METRICS, summary_rows


def settings(tmp_path: Path, **changes) -> StyleGan3Settings:
    values = dict(
        checkout=str(tmp_path / "stylegan3"), python=sys.executable, resume_pkl=str(tmp_path / "pretrained.pkl"),
        cfg="stylegan3-t", iterations=8000, batch=16, batch_gpu=None, gamma=2.0, resolution=256, mirror=False,
        snap=10, seed=0,
    )
    return StyleGan3Settings(**{**values, **changes})


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder with the official scripts' names and a pickle, as require_checkout looks for them."""
    folder = tmp_path / "stylegan3"
    folder.mkdir()
    for script in ("dataset_tool.py", "train.py", "gen_images.py"):
        (folder / script).write_text("")
    (tmp_path / "pretrained.pkl").write_bytes(b"pickle")
    return folder


def write_train_prompts(folder: Path, labels: list[int], size: int = 224) -> Path:
    """A train_prompts.csv over grayscale PNGs whose brightness encodes their row."""
    rows = []
    for index, label in enumerate(labels):
        path = folder / f"slice_{index}.png"
        Image.fromarray(np.full((size, size), 10 * index, dtype=np.uint8), "L").save(path)
        rows.append({"image": str(path), "prompt": f"prompt {index}", "label": label, "size": "", "position": ""})
    csv = folder / "train_prompts.csv"
    pd.DataFrame(rows, columns=["image", "prompt", "label", "size", "position"]).to_csv(csv, index=False)
    return csv


def generation_prompts(count: int = 6) -> pd.DataFrame:
    labels = [1, 0] * (count // 2)
    return pd.DataFrame({"index": range(count), "prompt": [f"p{label}" for label in labels], "label": labels,
                         "seed": [100 + index for index in range(count)]})


# ---- kimg and the command lines ----------------------------------------------------------------------------


@pytest.mark.parametrize("iterations, batch, kimg", [(8000, 16, 128), (25000, 16, 400), (5400, 32, 173), (10, 3, 1), (1, 1, 1)])
def test_kimg_is_thousands_of_images_rounded_up(iterations, batch, kimg):
    assert kimg_for(iterations, batch) == kimg


def test_dataset_tool_command(tmp_path):
    command = dataset_tool_command(settings(tmp_path), tmp_path / "source", tmp_path / "dataset.zip")
    assert command == [
        sys.executable, str(tmp_path / "stylegan3/dataset_tool.py"), f"--source={tmp_path / 'source'}",
        f"--dest={tmp_path / 'dataset.zip'}", "--resolution=256x256",
    ]


def test_train_command(tmp_path):
    command = train_command(settings(tmp_path), tmp_path / "dataset.zip", tmp_path / "training")
    assert command[:2] == [sys.executable, str(tmp_path / "stylegan3/train.py")]
    assert sorted(command[2:]) == sorted([
        f"--outdir={tmp_path / 'training'}", "--cfg=stylegan3-t", f"--data={tmp_path / 'dataset.zip'}", "--gpus=1",
        "--batch=16", "--gamma=2.0", "--cond=True", "--mirror=False", f"--resume={tmp_path / 'pretrained.pkl'}",
        "--kimg=128", "--snap=10", "--seed=0", "--metrics=none",
    ])
    mirrored = train_command(settings(tmp_path, mirror=True, batch_gpu=8, cfg="stylegan3-r"), Path("d.zip"), Path("o"))
    assert {"--mirror=True", "--batch-gpu=8", "--cfg=stylegan3-r"} <= set(mirrored)


def test_generate_command(tmp_path):
    command = generate_command(settings(tmp_path), tmp_path / "net.pkl", [3, 1, 7], 1, tmp_path / "class1")
    assert command == [
        sys.executable, str(tmp_path / "stylegan3/gen_images.py"), f"--network={tmp_path / 'net.pkl'}",
        "--seeds=3,1,7", "--class=1", "--trunc=1", f"--outdir={tmp_path / 'class1'}",
    ]


# ---- files in and out -------------------------------------------------------------------------------------


def test_dataset_source_has_rgb_images_at_the_resolution_and_their_labels(tmp_path):
    labels = [1, 0, 0, 1, 1]
    source = tmp_path / "source"
    table = write_dataset_source(write_train_prompts(tmp_path, labels), source, 256)
    meta = json.loads((source / "dataset.json").read_text())
    assert meta == {"labels": [[f"{index:05d}.png", label] for index, label in enumerate(labels)]}
    assert list(table.label) == labels
    for index, (name, label) in enumerate(meta["labels"]):
        with Image.open(source / name) as image:
            assert image.mode == "RGB" and image.size == (256, 256)
            assert abs(int(np.asarray(image)[128, 128, 0]) - 10 * index) <= 1  # the CSV's row index, its label
    assert sorted(path.name for path in source.iterdir()) == sorted([*(name for name, _ in meta["labels"]), "dataset.json"])


def test_dataset_source_needs_both_labels(tmp_path):
    with pytest.raises(StyleGan3Error, match="both labels"):
        write_dataset_source(write_train_prompts(tmp_path, [1, 1]), tmp_path / "source", 256)


def test_final_snapshot_is_the_last_of_the_newest_run(tmp_path):
    for run, kimgs in (("00000-stylegan3-t-dataset-gpus1-batch16-gamma2", (0, 40, 80)),
                       ("00001-stylegan3-t-dataset-gpus1-batch16-gamma2", (0, 40, 128))):
        (tmp_path / run).mkdir()
        for kimg in kimgs:
            (tmp_path / run / f"network-snapshot-{kimg:06d}.pkl").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    assert final_snapshot(tmp_path) == tmp_path / "00001-stylegan3-t-dataset-gpus1-batch16-gamma2/network-snapshot-000128.pkl"
    with pytest.raises(StyleGan3Error, match="no run folder"):
        final_snapshot(tmp_path / "empty")


def test_generated_seed_images_become_the_manifest_and_images(tmp_path):
    prompts = generation_prompts(6)
    seeds = seeds_by_class(prompts)
    assert seeds == {0: [101, 103, 105], 1: [100, 102, 104]}
    folders = {}
    for label, label_seeds in seeds.items():  # as gen_images.py writes them: seed<seed:04d>.png, 256 px, RGB
        folders[label] = tmp_path / f"class{label}"
        folders[label].mkdir()
        for seed in label_seeds:
            Image.fromarray(np.full((256, 256, 3), seed, dtype=np.uint8), "RGB").save(folders[label] / f"seed{seed:04d}.png")
    images = tmp_path / "images"
    manifest = collect_generated(prompts, folders, images, 224)
    assert list(manifest.columns) == ["file", "prompt", "label", "seed"]
    assert manifest[["prompt", "label", "seed"]].equals(prompts[["prompt", "label", "seed"]])
    assert list(manifest.file) == [str(images / f"{index:05d}.png") for index in range(6)]
    for row in manifest.itertuples():
        with Image.open(row.file) as image:
            assert image.mode == "RGB" and image.size == (224, 224)
            assert int(np.asarray(image)[100, 100, 0]) == row.seed  # the image of its own seed


def test_repeated_seed_in_a_class_is_refused():
    prompts = generation_prompts(4)
    prompts.loc[2, "seed"] = prompts.loc[0, "seed"]
    with pytest.raises(StyleGan3Error, match="repeat a seed"):
        seeds_by_class(prompts)


# ---- errors before any work --------------------------------------------------------------------------------


def test_without_a_gpu_the_stage_stops_before_any_work(tmp_path, checkout, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    called = []
    monkeypatch.setattr(stylegan3.subprocess, "run", lambda *args, **kwargs: called.append(args))
    work = tmp_path / "work"
    with pytest.raises(StyleGan3Error) as error:
        run_stylegan3_stage(
            settings=settings(tmp_path), name="stylegan3_8k", train_csv=write_train_prompts(tmp_path, [0, 1]),
            prompts_csv=tmp_path / "missing.csv", image_size=224, work_dir=work, images_dir=work / "images",
            manifest_csv=work / "manifest.csv", summary_json=work / "summary.json",
        )
    message = str(error.value)
    assert "NVIDIA GPU" in message and "custom CUDA ops" in message and "paper.yaml" in message
    assert not work.exists() and not called


def test_missing_checkout_scripts_interpreter_or_pickle_are_named(tmp_path, checkout):
    require_checkout(settings(tmp_path), "stylegan3_8k")  # all there
    with pytest.raises(StyleGan3Error, match=r"methods\.stylegan3_8k\.checkout: .* is not a folder"):
        require_checkout(settings(tmp_path, checkout=str(tmp_path / "nowhere")), "stylegan3_8k")
    with pytest.raises(StyleGan3Error, match=r"methods\.stylegan3_8k\.python"):
        require_checkout(settings(tmp_path, python=str(tmp_path / "env/bin/python")), "stylegan3_8k")
    with pytest.raises(StyleGan3Error, match=r"methods\.stylegan3_8k\.resume_pkl: .*pretrained\.pkl is missing"):
        (tmp_path / "pretrained.pkl").unlink()
        require_checkout(settings(tmp_path), "stylegan3_8k")
    (checkout / "train.py").unlink()
    with pytest.raises(StyleGan3Error, match=r"lacks \['train.py'\]"):
        require_checkout(settings(tmp_path), "stylegan3_8k")


@pytest.mark.parametrize("resolution", [128, 200, 300])
def test_resolution_must_be_a_power_of_two_not_below_the_image_size(resolution):
    with pytest.raises(StyleGan3Error, match="e.g. 256"):
        require_resolution(resolution, 224)
    require_resolution(256, 224)


def test_a_failing_official_script_is_named(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import sys; sys.exit(3)")
    with pytest.raises(StyleGan3Error, match=r"train\.py failed \(exit status 3\).*Command: .*train\.py --kimg=1"):
        stylegan3.run_command([sys.executable, str(script), "--kimg=1"], tmp_path)


# Stand-ins for the official scripts, reading the options the real ones take and writing what they write.
FAKE_SCRIPTS = {
    "dataset_tool.py": """
import json, sys, zipfile
from pathlib import Path
options = dict(argument[2:].split("=", 1) for argument in sys.argv[1:])
assert options["resolution"] == "256x256"
with zipfile.ZipFile(options["dest"], "w") as archive:
    for path in sorted(Path(options["source"]).iterdir()):
        archive.write(path, path.name)
""",
    "train.py": """
import json, sys, zipfile
from pathlib import Path
options = dict(argument[2:].split("=", 1) for argument in sys.argv[1:])
assert options["cond"] == "True" and options["metrics"] == "none" and options["kimg"] == "1"
labels = json.loads(zipfile.ZipFile(options["data"]).read("dataset.json"))["labels"]
run = Path(options["outdir"]) / "00000-stylegan3-t-dataset-gpus1-batch4-gamma2"
run.mkdir(parents=True)
(run / "network-snapshot-000000.pkl").write_text("untrained")
(run / "network-snapshot-000001.pkl").write_text(json.dumps(labels))
""",
    "gen_images.py": """
import sys
from pathlib import Path
from PIL import Image
options = dict(argument[2:].split("=", 1) for argument in sys.argv[1:])
assert Path(options["network"]).name == "network-snapshot-000001.pkl" and options["trunc"] == "1"
Path(options["outdir"]).mkdir(parents=True)
for seed in options["seeds"].split(","):
    Image.new("RGB", (256, 256), (int(options["class"]) * 200, 0, 0)).save(Path(options["outdir"]) / f"seed{int(seed):04d}.png")
""",
}


def test_stage_runs_the_three_scripts_into_images_manifest_and_summary(tmp_path, checkout, monkeypatch):
    """With stand-ins for the official scripts and the GPU check passed: the glue between them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name, code in FAKE_SCRIPTS.items():
        (checkout / name).write_text(code)
    train_csv = write_train_prompts(tmp_path, [0, 1, 1, 0])
    prompts = generation_prompts(6)
    prompts.to_csv(tmp_path / "generation_prompts.csv", index=False)
    work = tmp_path / "results/brats/stylegan3/stylegan3_8k"
    out = tmp_path / "results/brats/generate/stylegan3_8k"
    run_stylegan3_stage(
        settings=settings(tmp_path, iterations=10, batch=4), name="stylegan3_8k", train_csv=train_csv,
        prompts_csv=tmp_path / "generation_prompts.csv", image_size=224, work_dir=work, images_dir=out / "images",
        manifest_csv=out / "manifest.csv", summary_json=work / "summary.json",
    )
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest[["prompt", "label", "seed"]].equals(prompts[["prompt", "label", "seed"]])
    for row in manifest.itertuples():
        with Image.open(row.file) as image:
            assert image.size == (224, 224) and image.getpixel((50, 50))[0] == row.label * 200  # its class's image
    summary = json.loads((work / "summary.json").read_text())
    assert summary["kimg"] == 1 and summary["steps"] == 10 and summary["generated_images"] == 6
    reported = {row["metric"]: row["value"]
                for row in summary_rows("brats", "stylegan3_8k", work / "summary.json", SUMMARY_METRICS["stylegan3"])}
    assert reported["steps"] == 10 and reported["training_seconds"] >= 0  # what the report's adapter table shows
    network = Path(summary["network_pkl"])
    assert network.name == "network-snapshot-000001.pkl"
    # the labels train.py found in the ZIP are those of the training CSV
    assert json.loads(network.read_text()) == [[f"{index:05d}.png", label] for index, label in enumerate([0, 1, 1, 0])]


def test_settings_from_a_config_entry_name_a_wrong_key():
    entry = {"kind": "stylegan3", "checkout": "c", "python": "p", "resume_pkl": "r", "cfg": "stylegan3-t",
             "iterations": 25000, "batch": 16, "batch_gpu": None, "gamma": 2, "resolution": 256, "mirror": False,
             "snap": 10, "seed": 0}
    assert StyleGan3Settings.from_method(entry, "stylegan3_25k").kimg == 400
    with pytest.raises(ValueError, match=r"methods\.stylegan3_25k: unknown key\(s\) \['epochs'\]"):
        StyleGan3Settings.from_method({**entry, "epochs": 3}, "stylegan3_25k")
