"""The StyleGAN3 baseline: the pre-flight against networks and pickles made by NVIDIA's official code (on a CPU),
and without a GPU the command lines the stages build, each class's dataset folder for dataset_tool.py, the final
snapshot they pick, the images and manifest they merge, and the errors that stop them before any work."""

import ast
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from stylegan3_official import TINY, official_networks, require_official_code, save_snapshot

from migros.gan import stylegan3, stylegan3_resume_check
from migros.gan.stylegan3 import (
    IMAGE_CLASSES, StyleGan3Error, StyleGan3Settings, collect_generated, dataset_tool_command, final_snapshot,
    generate_command, kimg_for, require_checkout, require_resolution, run_stylegan3_class_stage,
    run_stylegan3_merge_stage, run_stylegan3_preflight, seeds_by_class, train_command, train_options,
    write_class_source,
)
from migros.gan.stylegan3_resume_check import ResumeMismatch, check_resume, planned_networks, require_same_tensors
from migros.report.metrics import SUMMARY_METRICS, summary_rows

REPO = Path(__file__).resolve().parents[1]
WHERE = "methods.stylegan3_test"


def settings(tmp_path: Path, **changes) -> StyleGan3Settings:
    values = dict(
        checkout=str(tmp_path / "stylegan3"), python=sys.executable, resume_pkl=str(tmp_path / "pretrained.pkl"),
        cfg="stylegan3-t", cbase=16384, cmax=512, map_depth=None, resolution=256, iterations=8000, batch=16,
        batch_gpu=None, gamma=2.0, mirror=False, snap=10, seed=0,
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
        "--batch=16", "--gamma=2.0", "--cond=False", "--mirror=False", "--cbase=16384", "--cmax=512",
        f"--resume={tmp_path / 'pretrained.pkl'}", "--kimg=128", "--snap=10", "--seed=0", "--metrics=none",
    ])
    changed = settings(tmp_path, mirror=True, batch_gpu=8, cfg="stylegan3-r", map_depth=4, cbase=32768, cmax=1024)
    mirrored = train_command(changed, Path("d.zip"), Path("o"))
    assert {"--mirror=True", "--batch-gpu=8", "--cfg=stylegan3-r", "--map-depth=4", "--cbase=32768", "--cmax=1024"} <= set(mirrored)
    assert mirrored[2:4] == ["--outdir=o", "--data=d.zip"] and mirrored[4:] == train_options(changed)


def test_generate_command(tmp_path):
    command = generate_command(settings(tmp_path), tmp_path / "net.pkl", [3, 1, 7], tmp_path / "healthy")
    assert command == [
        sys.executable, str(tmp_path / "stylegan3/gen_images.py"), f"--network={tmp_path / 'net.pkl'}",
        "--seeds=3,1,7", "--trunc=1", f"--outdir={tmp_path / 'healthy'}",
    ]


# ---- the pre-flight, with the official code -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pickles(tmp_path_factory, single_thread) -> dict[str, Path]:
    """Snapshot pickles made by the official code: one of the TINY plan's architecture and one per way of
    differing from it."""
    require_official_code()
    folder = tmp_path_factory.mktemp("pickles")
    variants = {
        "matching": {},
        "conditional": {"c_dim": 2},
        "cbase": {"cbase": 512},
        "cmax": {"cmax": 32},
        "map_depth": {"map_depth": 4},
        "resolution": {"resolution": 32},
        "stylegan3-r": {"cfg": "stylegan3-r"},
        "stylegan2": {"cfg": "stylegan2"},
    }
    return {name: save_snapshot(folder / f"{name}.pkl", **changes) for name, changes in variants.items()}


def tiny_plan(resume_pkl: Path, **changes) -> StyleGan3Settings:
    """The settings of a method planned at the TINY architecture (a batch of 4: train.py's minibatch-std group)."""
    return settings(Path("unused"), checkout=str(require_official_code()), resume_pkl=str(resume_pkl), batch=4,
                    iterations=1, **{**TINY, **changes})


def check(plan: StyleGan3Settings) -> dict:
    return check_resume(plan.checkout, plan.resume_pkl, plan.resolution, train_options(plan), WHERE)


def test_a_pickle_of_the_planned_architecture_is_accepted(pickles):
    report = check(tiny_plan(pickles["matching"]))
    assert report["accepted"] and report["tensors_compared"] > 100
    expected = {"cfg": "stylegan3-t", "cbase": 256, "cmax": 64, "map_depth": 2, "resolution": 16, "c_dim": 0, "img_channels": 3}
    assert report["pickle"] == report["planned"] == expected
    for cfg in ("stylegan3-r", "stylegan2"):  # each architecture of train.py, planned with its own cfg
        assert check(tiny_plan(pickles[cfg], cfg=cfg))["pickle"]["cfg"] == cfg


@pytest.mark.parametrize("variant, key, value", [
    ("cbase", "cbase", 512), ("cmax", "cmax", 32), ("map_depth", "map_depth", 4), ("resolution", "resolution", 32),
    ("stylegan3-r", "cfg", "stylegan3-r"), ("stylegan2", "cfg", "stylegan2"),
])
def test_a_pickle_of_another_architecture_is_refused_naming_the_key_and_its_value(pickles, variant, key, value):
    with pytest.raises(ResumeMismatch) as error:
        check(tiny_plan(pickles[variant]))
    message = str(error.value)
    assert f"{WHERE}.{key}: the pickle's networks have {key} {value}" in message and f"set {key}: {value}" in message
    assert "tensors differ" in message and "G." in message
    check(tiny_plan(pickles[variant], **{key: value}))  # and with the key set as the message says, accepted


def test_a_conditional_pickle_is_refused_naming_resume_pkl(pickles):
    with pytest.raises(ResumeMismatch, match=rf"{WHERE}\.resume_pkl: the pickle holds a conditional network \(2 classes\)") as error:
        check(tiny_plan(pickles["conditional"]))
    # the mapping's first layer takes z and the embedded label: 512 + 512 inputs
    assert "G.mapping.fc0.weight is [512, 1024] in the pickle, [512, 512] planned" in str(error.value)


def test_a_conditional_plan_is_refused_for_an_unconditional_pickle(pickles):
    """The original plan (train.py --cond=True resumed from FFHQ-U), built as train.py builds it for two classes."""
    from torch_utils import misc  # importable: the pickles fixture put the official code on sys.path

    conditional = official_networks(**TINY, c_dim=2)
    unconditional = stylegan3_resume_check.load_pickle(str(pickles["matching"]), WHERE)
    with pytest.raises(ResumeMismatch, match=r"the planned networks are conditional \(2 classes, train\.py --cond=True\)"):
        require_same_tensors(unconditional, conditional, WHERE)
    # what train.py's resume does with it: the error the pre-flight spares a GPU job
    with pytest.raises(RuntimeError, match=r"size of tensor a \(1024\) must match the size of tensor b \(512\)"):
        misc.copy_params_and_buffers(unconditional["G"], conditional["G"])


def test_the_planned_networks_take_an_accepted_pickle_as_train_py_resumes_it(pickles):
    """Every tensor of the planned networks comes from the pickle with the official copy (require_all: none is left
    at its initial value), and the resumed generator makes the pickle's images."""
    from torch_utils import misc

    plan = tiny_plan(pickles["matching"])
    planned = planned_networks(train_options(plan), plan.resolution, WHERE)
    resumed = stylegan3_resume_check.load_pickle(plan.resume_pkl, WHERE)
    for name in ("G", "D"):
        misc.copy_params_and_buffers(resumed[name], planned[name], require_all=True)
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = planned["G"](z, None, noise_mode="const")
        assert images.shape == (2, 3, 16, 16)
        torch.testing.assert_close(images, resumed["G"](z, None, noise_mode="const"))


def test_options_that_train_py_refuses_are_named(pickles):
    """train.py's own checks run on the plan: here a GPU batch below its minibatch-std group of 4."""
    with pytest.raises(ResumeMismatch, match=r"train\.py refuses the planned options .*--batch-gpu=2.*--batch-gpu cannot be smaller than --mbstd"):
        check(tiny_plan(pickles["matching"], batch_gpu=2))


def test_a_file_that_is_no_network_pickle_is_named(tmp_path):
    (tmp_path / "pretrained.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ResumeMismatch, match=rf"{WHERE}\.resume_pkl: .*pretrained\.pkl is not a network pickle"):
        check(tiny_plan(tmp_path / "pretrained.pkl"))


def test_preflight_job_runs_the_check_with_the_methods_interpreter(pickles, tmp_path):
    """The pre-flight stage as its rule runs it: the check script started with `python` of the method's entry (this
    interpreter stands in for the official env's), reporting the accepted architecture or the key to change."""
    report = tmp_path / "preflight/stylegan3_test.json"
    report.parent.mkdir()
    run_stylegan3_preflight(settings=tiny_plan(pickles["matching"]), name="stylegan3_test", dataset="brats",
                            image_size=16, report_json=report)
    assert json.loads(report.read_text())["pickle"]["cbase"] == 256
    with pytest.raises(StyleGan3Error, match=rf"{WHERE}\.cbase: .* set cbase: 512"):
        run_stylegan3_preflight(settings=tiny_plan(pickles["cbase"]), name="stylegan3_test", dataset="brats",
                                image_size=16, report_json=report)
    assert not report.exists()  # a refused pickle leaves no output for the training jobs


def test_preflight_checks_the_paths_and_resolution_before_loading_anything(tmp_path, checkout, monkeypatch):
    started = []
    monkeypatch.setattr(stylegan3.subprocess, "run", lambda *args, **kwargs: started.append(args))
    with pytest.raises(StyleGan3Error, match=r"methods\.stylegan3_test\.resume_pkl: .* is missing"):
        (tmp_path / "pretrained.pkl").unlink()
        run_stylegan3_preflight(settings=settings(tmp_path), name="stylegan3_test", dataset="brats", image_size=224,
                                report_json=tmp_path / "report.json")
    (tmp_path / "pretrained.pkl").write_bytes(b"")
    with pytest.raises(StyleGan3Error, match=r"methods\.stylegan3_test\.resolution: 256 is below datasets\.picai\.image_size \(300\)"):
        run_stylegan3_preflight(settings=settings(tmp_path), name="stylegan3_test", dataset="picai", image_size=300,
                                report_json=tmp_path / "report.json")
    assert not started


def test_the_check_script_runs_on_the_official_envs_python_3_9():
    """It is started by the interpreter of envs/stylegan3.yaml (Python 3.9): no newer syntax."""
    source = Path(stylegan3_resume_check.__file__).read_text()
    ast.parse(source, feature_version=(3, 9))
    assert "from __future__ import annotations" in source  # so that `X | None` annotations are not evaluated
    assert not re.search(r"^from migros|^import migros", source, re.MULTILINE)  # not installed in that env


# ---- files in and out -------------------------------------------------------------------------------------


def test_class_source_has_that_classes_rgb_images_at_the_resolution(tmp_path):
    labels = [1, 0, 0, 1, 1]
    source = tmp_path / "source"
    assert write_class_source(write_train_prompts(tmp_path, labels), 1, source, 256) == 3
    assert sorted(path.name for path in source.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for name, row in zip(sorted(source.iterdir()), [0, 3, 4]):  # the CSV rows of label 1, in order
        with Image.open(name) as image:
            assert image.mode == "RGB" and image.size == (256, 256)
            assert abs(int(np.asarray(image)[128, 128, 0]) - 10 * row) <= 1  # the brightness of its CSV row


def test_class_source_needs_slices_of_its_class(tmp_path):
    with pytest.raises(StyleGan3Error, match="no training slice of label 0"):
        write_class_source(write_train_prompts(tmp_path, [1, 1]), 0, tmp_path / "source", 256)


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


def test_without_a_gpu_the_training_stops_before_any_work(tmp_path, checkout, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    called = []
    monkeypatch.setattr(stylegan3.subprocess, "run", lambda *args, **kwargs: called.append(args))
    work = tmp_path / "work"
    with pytest.raises(StyleGan3Error) as error:
        run_stylegan3_class_stage(
            settings=settings(tmp_path), name="stylegan3_8k", image_class="tumour",
            train_csv=write_train_prompts(tmp_path, [0, 1]), prompts_csv=tmp_path / "missing.csv", work_dir=work,
            generated_dir=work / "generated", summary_json=work / "summary.json",
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


@pytest.mark.parametrize("resolution, reason", [
    (128, r"is below datasets\.brats\.image_size \(224\)"), (200, "is not a power of two"), (300, "is not a power of two"),
])
def test_resolution_must_be_a_power_of_two_not_below_the_image_size(tmp_path, resolution, reason):
    with pytest.raises(StyleGan3Error, match=rf"methods\.m\.resolution: {resolution} {reason}.*; e\.g\. 256, with a pickle"):
        require_resolution(settings(tmp_path, resolution=resolution), "m", "brats", 224)
    require_resolution(settings(tmp_path, resolution=256), "m", "brats", 224)


def test_a_failing_official_script_is_named(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import sys; sys.exit(3)")
    with pytest.raises(StyleGan3Error, match=r"train\.py failed \(exit status 3\).*Command: .*train\.py --kimg=1"):
        stylegan3.run_command([sys.executable, str(script), "--kimg=1"], tmp_path)


# Stand-ins for the official scripts, reading the options the real ones take and writing what they write; the
# snapshot records the training images, and each generated image's red level is 40 × their number.
FAKE_SCRIPTS = {
    "dataset_tool.py": """
import sys, zipfile
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
assert options["cond"] == "False" and options["metrics"] == "none" and options["kimg"] == "1"
assert options["cbase"] == "16384" and Path(options["resume"]).name == "pretrained.pkl"
names = zipfile.ZipFile(options["data"]).namelist()
run = Path(options["outdir"]) / "00000-stylegan3-t-dataset-gpus1-batch4-gamma2"
run.mkdir(parents=True)
(run / "network-snapshot-000000.pkl").write_text("untrained")
(run / "network-snapshot-000001.pkl").write_text(json.dumps(names))
""",
    "gen_images.py": """
import json, sys
from pathlib import Path
from PIL import Image
options = dict(argument[2:].split("=", 1) for argument in sys.argv[1:])
assert Path(options["network"]).name == "network-snapshot-000001.pkl" and options["trunc"] == "1"
assert "class" not in options  # an unconditional network
red = 40 * len(json.loads(Path(options["network"]).read_text()))
Path(options["outdir"]).mkdir(parents=True)
for seed in options["seeds"].split(","):
    Image.new("RGB", (256, 256), (red, 0, 0)).save(Path(options["outdir"]) / f"seed{int(seed):04d}.png")
""",
}


def test_each_class_trains_its_network_and_the_merge_makes_the_generated_set(tmp_path, checkout, monkeypatch):
    """With stand-ins for the official scripts and the GPU check passed: the glue between them. Healthy has 2
    training slices and tumour 3, so each image's red level tells which class's network made it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name, code in FAKE_SCRIPTS.items():
        (checkout / name).write_text(code)
    train_csv = write_train_prompts(tmp_path, [0, 1, 1, 0, 1])
    prompts = generation_prompts(6)
    prompts.to_csv(tmp_path / "generation_prompts.csv", index=False)
    plan = settings(tmp_path, iterations=10, batch=4)
    work = tmp_path / "results/brats/stylegan3/stylegan3_8k"
    class_outputs = {}
    for image_class in IMAGE_CLASSES:
        class_outputs[image_class] = (work / image_class / "generated", work / image_class / "summary.json")
        run_stylegan3_class_stage(
            settings=plan, name="stylegan3_8k", image_class=image_class, train_csv=train_csv,
            prompts_csv=tmp_path / "generation_prompts.csv", work_dir=work / image_class,
            generated_dir=class_outputs[image_class][0], summary_json=class_outputs[image_class][1],
        )
    healthy = json.loads(class_outputs["healthy"][1].read_text())
    assert healthy["training_images"] == 2 and healthy["generated_images"] == 3 and healthy["label"] == 0
    assert sorted(path.name for path in class_outputs["healthy"][0].iterdir()) == ["seed0101.png", "seed0103.png", "seed0105.png"]
    out = tmp_path / "results/brats/generate/stylegan3_8k"
    run_stylegan3_merge_stage(
        settings=plan, name="stylegan3_8k", prompts_csv=tmp_path / "generation_prompts.csv",
        class_outputs=class_outputs, image_size=224, images_dir=out / "images", manifest_csv=out / "manifest.csv",
        summary_json=work / "summary.json",
    )
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest[["prompt", "label", "seed"]].equals(prompts[["prompt", "label", "seed"]])
    for row in manifest.itertuples():
        with Image.open(row.file) as image:
            assert image.size == (224, 224) and image.getpixel((50, 50))[0] == 40 * (3 if row.label else 2)
    summary = json.loads((work / "summary.json").read_text())
    assert summary["kimg"] == 1 and summary["steps"] == 10 and summary["generated_images"] == 6
    assert summary["training_images"] == 5 and set(summary["networks"]) == {"healthy", "tumour"}
    reported = {row["metric"]: row["value"]
                for row in summary_rows("brats", "stylegan3_8k", work / "summary.json", SUMMARY_METRICS["stylegan3"])}
    assert reported["steps"] == 10 and reported["training_seconds"] >= 0  # what the report's adapter table shows


def test_unknown_image_class_is_refused(tmp_path, checkout, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(StyleGan3Error, match=r"unknown image class 'lesion'"):
        run_stylegan3_class_stage(
            settings=settings(tmp_path), name="stylegan3_8k", image_class="lesion",
            train_csv=write_train_prompts(tmp_path, [0, 1]), prompts_csv=tmp_path / "missing.csv",
            work_dir=tmp_path / "work", generated_dir=tmp_path / "generated", summary_json=tmp_path / "summary.json",
        )


def test_the_rules_classes_are_the_modules():
    """workflow/rules/stylegan3.smk names the classes in the training jobs' paths; Snakemake cannot import this package
    on a login node, so the list is written there too, in label order."""
    rules = (REPO / "workflow/rules/stylegan3.smk").read_text()
    (listed,) = re.findall(r"^STYLEGAN3_CLASSES = \[(.*)\]", rules, re.MULTILINE)
    assert re.findall(r'"(\w+)"', listed) == sorted(IMAGE_CLASSES, key=IMAGE_CLASSES.get)


def test_settings_from_a_config_entry_name_a_wrong_key():
    entry = {"kind": "stylegan3", "checkout": "c", "python": "p", "resume_pkl": "r", "cfg": "stylegan3-t",
             "cbase": 16384, "cmax": 512, "map_depth": None, "iterations": 25000, "batch": 16, "batch_gpu": None,
             "gamma": 2, "resolution": 256, "mirror": False, "snap": 10, "seed": 0}
    assert StyleGan3Settings.from_method(entry, "stylegan3_25k").kimg == 400
    with pytest.raises(ValueError, match=r"methods\.stylegan3_25k: unknown key\(s\) \['epochs'\]"):
        StyleGan3Settings.from_method({**entry, "epochs": 3}, "stylegan3_25k")
