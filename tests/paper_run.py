"""The workflow run that test_paper_config.py reads: config/paper.yaml on Stable Diffusion v1.5's exact
architecture (random weights in a temporary Hugging Face cache), offline, with an override file that only shrinks
sizes (see that module's docstring). conftest.py starts it with the session and awaits it in the fixture
`paper_run`."""

import os
from pathlib import Path

import torch
import torchvision
import yaml
from workflow_run import REPO, BackgroundRun, copy_workflow, snakemake

from migros.diffusion.model_ids import SD15_ID
from migros.diffusion.sd15_architecture import build_sd15_pipeline, write_to_hub_cache
from migros.phantoms.brain import write_brats_phantoms
from migros.phantoms.prostate import write_picai_phantoms

METHODS = {"brats": ["lora_r4"], "picai": ["selora_e150"]}  # LoRA and SeLoRA (with its own epochs) on SD v1.5
PAPER = yaml.safe_load((REPO / "config/paper.yaml").read_text())
DAG_IMAGE_SIZE = 64
CONFIGS = ("--configfile", "config/paper.yaml", "shrink.yaml")


def shrink(data_roots: dict[str, str]) -> dict:
    """Overrides of paper.yaml that only make the run smaller; Snakemake merges them key by key."""
    datasets = {
        name: {"root": root, "split": {"train": 4, "test": 4, "reserve": 4}, "methods": METHODS[name],
               "classifier_methods": METHODS[name]}
        for name, root in data_roots.items()
    }
    for dataset in datasets.values():
        dataset["image_size"] = DAG_IMAGE_SIZE
    return {
        "datasets": datasets,
        "finetune": {"epochs": 1, "checkpoint_every": 1, "replicates": 1},
        "methods": {"selora_e150": {"expand_every": 2, "epochs": 2}},
        "generation": {"images": 4, "steps": 2, "batch_size": 4},
        "fid": {"kid_subsets": 2, "kid_subset_size": 2, "batch_size": 8},
        "classifier": {"budget": {"epochs": 1}, "seeds": [0]},
        # one timestep and draw: 2 UNet passes per audited slice and model
        "privacy_audit": {"timesteps": [500], "noise_draws": 1, "batch_size": 8, "bootstrap_resamples": 50},
    }


class PaperRun:
    """The run on phantoms in the real BraTS 2021 and PI-CAI layouts, started on construction."""

    def __init__(self, workdir: Path):
        copy_workflow(workdir)
        self.hf_home, torch_home = workdir / "hf_home", workdir / "torch_home"
        write_to_hub_cache(build_sd15_pipeline(seed=0), self.hf_home / "hub", SD15_ID)
        resnet = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
        resnet.parent.mkdir(parents=True)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
        roots = {"brats": workdir / "data/BraTS2021", "picai": workdir / "data/PI-CAI"}
        write_brats_phantoms(roots["brats"], 32, (60, 60, 40), seed=2021)  # room for the reserve (tiny_config)
        write_picai_phantoms(roots["picai"], 50, (64, 64, 16), (3.0, 3.0, 3.0), seed=2022)
        (workdir / "shrink.yaml").write_text(yaml.safe_dump(shrink({name: str(root) for name, root in roots.items()})))
        self.env = {**os.environ, "HF_HOME": str(self.hf_home), "TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1"}
        self.run = BackgroundRun(workdir, *CONFIGS, env=self.env)

    def wait(self) -> tuple[Path, Path]:
        """(workdir, HF_HOME) once the run and its report have succeeded."""
        workdir = self.run.wait()
        report = snakemake(workdir, *CONFIGS, "--report", "report.html", env=self.env)
        assert report.returncode == 0, report.stderr[-3000:]
        return workdir, self.hf_home

    def stop(self) -> None:
        self.run.stop()
