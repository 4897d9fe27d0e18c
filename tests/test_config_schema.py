"""The schema is the only place for defaults and limits: validation fills in the defaults, rejects what the stages
cannot run, and every stage's settings dataclass takes exactly its validated section."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from workflow_run import REPO, validated

from migros.data.slices import SliceSettings
from migros.diffusion.base_model import BaseModelSettings
from migros.diffusion.finetune import TrainingSettings
from migros.diffusion.generate import GenerationSettings
from migros.evaluation.classifier_settings import ClassifierSettings
from migros.evaluation.fid import FidSettings
from migros.evaluation.memorisation import MemorisationSettings
from migros.evaluation.postprocess import PostprocessSettings
from migros.phantoms import PhantomSettings
from migros.prompts import GenerationPromptSettings, PromptSettings
from migros.settings import SettingsError

CONFIG = yaml.safe_load((REPO / "config/study.yaml").read_text())  # both phantom datasets


def at(config: dict, path: tuple) -> tuple[dict, str]:
    """The dict holding the key at `path` in `config`, and that key."""
    *parents, key = path
    for parent in parents:
        config = config[parent]
    return config, key


def config_with(*changes) -> dict:
    """config/study.yaml with (path, value) changes; value None leaves the key out."""
    config = copy.deepcopy(CONFIG)
    for path, value in changes:
        node, key = at(config, path)
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    return config


def test_the_config_files_validate():
    for name in ("config", "paper"):
        validated(yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("path, default", [
    (("fid", "kid_subsets"), 100),
    (("fid", "max_generated"), None),
    (("finetune", "adam_betas"), [0.9, 0.999]),
    (("methods", "selora_l1.00", "init_rank"), 1),  # in a $ref chosen by if/then
    (("datasets", "brats", "field_of_view_mm"), None),  # in a map entry's $ref
    (("base_model", "demo", "corpus_size"), 3000),
])
def test_validation_fills_in_the_schemas_default(path, default):
    node, key = at(validated(config_with((path, None))), path)
    assert node[key] == default


def test_an_absent_section_with_a_default_gets_its_keys_defaults():
    config = validated(config_with((("base_model", "demo"), None)))
    assert config["base_model"]["demo"] == {"image_size": 64, "seed": 0, "corpus_size": 3000, "vae_steps": 550,
                                            "unet_steps": 650, "latent_downsampling": 8}


@pytest.mark.parametrize("changes", [
    [(("datasets", "brats", "image_size"), 100)],  # Stable Diffusion needs a multiple of 8
    [(("postprocess", "closing_size"), 4)],  # an elliptical element with a centre: odd
    [(("classifier", "blur", "kernel_size"), 4)],  # torchvision's gaussian_blur rejects even sizes
    [(("datasets", "brats", "demo", "seed"), -1)],  # the phantom generators reject negative seeds
    [(("datasets", "brats", "demo", "shape"), [120, 120, 15])],  # brain phantoms: 16 voxels per axis
    [(("datasets", "picai", "demo", "shape"), [31, 128, 20])],  # prostate phantoms: 32 x 32 in plane
    [(("datasets", "picai", "demo", "shape"), [128, 128, 3])],  # and 4 slices
    [(("datasets", "picai", "demo", "spacing"), None)],  # the PI-CAI phantoms need the voxel size
    [(("datasets", "picai", "demo", "spacing"), [1.5, 1.5, 12.0])],
    [(("fid", "max_generated"), 2)],  # KID needs 2 images per class
    [(("classifier", "budget"), {"epochs": 2, "steps": 2})],
    [(("classifier", "budget"), {"steps": 0})],
    [(("classifier", "budget"), {})],
    [(("base_model", "demo", "latent_downsampling"), 2)],  # the demo VAE has 8x and 4x geometries only
], ids=lambda changes: "-".join(f"{'.'.join(path)}={value}" for path, value in changes))
def test_a_value_the_stages_cannot_run_fails_validation(changes):
    with pytest.raises(WorkflowError, match="Error validating config file") as error:
        validated(config_with(*changes))
    (path, _), = changes
    assert repr(path[-1]) in str(error.value)  # the schema path of the failed check names the key


def test_picai_spacing_may_not_be_null():
    config = config_with()
    config["datasets"]["picai"]["demo"]["spacing"] = None
    with pytest.raises(WorkflowError, match="None is not of type 'array'"):
        validated(config)


VALIDATED = validated(copy.deepcopy(CONFIG))
BRATS = VALIDATED["datasets"]["brats"]
# Each stage's dataclass and its section as workflow/rules/common.smk hands it over.
SECTIONS = {
    PhantomSettings: {"loader": BRATS["loader"], **BRATS["demo"]},
    SliceSettings: {key: BRATS[key] for key in ("loader", "image_size", "intensity_percentiles", "field_of_view_mm",
                                                "split")},
    PromptSettings: BRATS["prompts"],
    GenerationPromptSettings: {key: VALIDATED["generation"][key] for key in ("images", "seed")},
    BaseModelSettings: VALIDATED["base_model"],
    TrainingSettings: {key: value for key, value in VALIDATED["finetune"].items() if key != "replicates"},  # jobs
    GenerationSettings: {key: value for key, value in VALIDATED["generation"].items() if key not in ("images", "seed")},
    PostprocessSettings: {**VALIDATED["postprocess"], "enabled": BRATS["postprocess"]},
    FidSettings: {**{key: value for key, value in VALIDATED["fid"].items() if key != "reference_split"},
                  "weights_cache_dir": "results/fid/inception"},
    MemorisationSettings: VALIDATED["memorisation"],
    ClassifierSettings: {**VALIDATED["classifier"], "image_size": BRATS["image_size"]},
}


@pytest.mark.parametrize("settings_class", SECTIONS, ids=lambda cls: cls.__name__)
def test_each_stage_takes_exactly_its_section_and_names_it_otherwise(settings_class):
    section = SECTIONS[settings_class]
    settings = settings_class.from_config(section)
    assert hash(settings) is not None  # frozen all the way down: lists became tuples
    with pytest.raises(SettingsError, match=rf"^{settings_class.SECTION.replace('(', '[(]').replace(')', '[)]')}: "
                                            r"unknown key\(s\) \['surplus'\]"):
        settings_class.from_config({**section, "surplus": 1})
    first = next(iter(section))
    with pytest.raises(SettingsError, match=rf"^{settings_class.SECTION.replace('(', '[(]').replace(')', '[)]')}: "
                                            rf"missing key\(s\) \['{first}'"):
        settings_class.from_config({key: value for key, value in section.items() if key != first})
