"""Method entries of the config: each kind's keys, training overrides split off, errors that name method and key."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from workflow_run import REPO, copy_workflow, snakemake, validated

from migros.adapters import ADAPTERS, TRAINING_KEYS, MethodConfigError, build_adapter, method_settings, training_overrides
from migros.diffusion.demo.architecture import build_demo_pipeline
from migros.diffusion.finetune import TrainingSettings, training_steps
from migros.gan import GAN_KINDS
from migros.gan.stylegan3 import StyleGan3Settings

CONFIGS = {name: validated(yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())) for name in ("config", "paper")}
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def tiny_pipeline():
    return build_demo_pipeline(image_size=16, vae_channels=(8, 8, 8, 8), unet_channels=(16, 16), norm_groups=4)


def run_steps(config: dict, dataset: str, method: dict) -> int:
    """The optimizer steps of `method` fine-tuned on `dataset` under `config`."""
    # as common.smk hands it to a fine-tune job: one replicate's section
    settings = TrainingSettings.from_config({key: value for key, value in config["finetune"].items()
                                             if key != "replicates"})
    settings = dataclasses.replace(settings, **training_overrides(method))
    return training_steps(config["datasets"][dataset]["split"]["train"], settings)


@pytest.mark.parametrize(
    "config_name, method_name, dataset",
    [(config_name, method_name, dataset) for config_name, config in CONFIGS.items()
     for method_name, method in config["methods"].items() if method["kind"] in ADAPTERS
     for dataset in config["datasets"]],
)
def test_every_configured_method_builds_its_adapter_for_every_dataset(config_name, method_name, dataset):
    """Any method may be listed on any dataset: it builds for that dataset's run (AdaLoRA's schedule must fit it)."""
    config = CONFIGS[config_name]
    method = config["methods"][method_name]
    adapter = build_adapter(tiny_pipeline(), method, seed=0, total_steps=run_steps(config, dataset, method),
                            name=method_name)
    assert isinstance(adapter, ADAPTERS[method["kind"]])
    settings = method_settings(method, method_name)
    assert {field.name for field in dataclasses.fields(settings)} >= set(method) - {"kind", *TRAINING_KEYS}
    expected_rank = method[ADAPTERS[method["kind"]].INITIAL_RANK_KEY]
    assert set(adapter.ranks().values()) == {expected_rank}
    assert sum(p.numel() for p in adapter.trainable_parameters()) > 0


def test_every_configured_gan_method_has_its_settings():
    """The methods that are not adapters are GANs, whose entries (without `kind`) are their settings."""
    for config in CONFIGS.values():
        gans = {name: method for name, method in config["methods"].items() if method["kind"] not in ADAPTERS}
        for name, method in gans.items():
            settings = GAN_KINDS[method["kind"]].from_method(method, name)
            assert dataclasses.asdict(settings).keys() == set(method) - {"kind"}, name
    assert any(method["kind"] == "gan" for method in CONFIGS["config"]["methods"].values())


def test_paper_selora_epoch_methods_override_only_training():
    paper = CONFIGS["paper"]["methods"]
    for name, epochs in (("selora_e150", 150), ("selora_e175", 175), ("selora_e200", 200)):
        assert training_overrides(paper[name]) == {"epochs": epochs}
        assert not hasattr(method_settings(paper[name], name), "epochs")
    assert training_overrides(paper["lora_r4"]) == {}


@pytest.mark.parametrize(
    "method, words",
    [
        ({"kind": "selora", "threshold": 1.0, "expand_evry": 5, "alpha": 1, "max_rank": None, "init_rank": 1},
         ["'expand_evry'", "selora"]),
        ({"kind": "lora", "rank": 4, "alpha": 4, "threshold": 1.0}, ["'threshold'", "lora"]),
        ({"kind": "selora", "threshold": 1.0, "alpha": 1, "max_rank": None, "init_rank": 1}, ["needs", "'expand_every'"]),
        ({"kind": "lorra", "rank": 4, "alpha": 4}, ["unknown kind 'lorra'"]),
    ],
    ids=["misspelt", "misplaced", "missing", "unknown_kind"],
)
def test_a_wrong_method_key_names_the_method_and_the_key(method, words):
    with pytest.raises(MethodConfigError) as error:
        method_settings(method, "my_method")
    assert "methods.my_method" in str(error.value)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_schema_keys_of_each_kind_are_its_settings_fields():
    """The schema checks keys when the config is validated, method_settings when an adapter is built: the same;
    a settings field the schema does not require has its default there."""
    for kind, adapter_class in ADAPTERS.items():
        schema = SCHEMA["$defs"][f"{kind}_method"]
        fields = {field.name for field in dataclasses.fields(adapter_class.Settings)}
        assert set(schema["properties"]) == {"kind", *TRAINING_KEYS} | fields
        assert all("default" in schema["properties"][name] for name in fields - set(schema["required"]))
    for kind, settings_class in GAN_KINDS.items():
        schema = SCHEMA["$defs"][f"{kind}_method"]
        fields = {field.name for field in dataclasses.fields(settings_class)}
        assert set(schema["properties"]) == {"kind"} | fields
        assert all("default" in schema["properties"][name] for name in fields - set(schema["required"]))
    assert set(SCHEMA["properties"]["methods"]["additionalProperties"]["properties"]["kind"]["enum"]) == {
        *ADAPTERS, *GAN_KINDS}
    # the workflow sends these kinds to their own rules instead of finetune / generate
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert set(re.findall(r'"(\w+)"', re.search(r"^GAN_KINDS = \((.*)\)", common, re.MULTILINE).group(1))) == set(GAN_KINDS)


def test_every_configured_stylegan3_method_builds_its_settings():
    built = 0
    for config in CONFIGS.values():
        for name, method in config["methods"].items():
            if method["kind"] == "stylegan3":
                settings = StyleGan3Settings.from_method(method, name)
                assert settings.kimg >= 1 and settings.resolution >= 224
                built += 1
    assert built >= 3  # paper.yaml: 8k, 18k and 25k iterations


def test_selora_max_rank_below_init_rank_is_rejected():
    method = {"kind": "selora", "threshold": 1.0, "expand_every": 5, "alpha": 1, "max_rank": 2, "init_rank": 3}
    with pytest.raises(MethodConfigError, match=r"max_rank \(2\) must not be below its init_rank \(3\)"):
        method_settings(method, "my_method")


@pytest.mark.parametrize("key, value", [("expand_evry", 5), ("rank", 4)], ids=["misspelt", "misplaced"])
def test_snakemake_stops_at_validation_on_a_wrong_method_key(tmp_path: Path, key, value):
    """Before any job is planned: the paper's PI-CAI SeLoRA method with a wrong key, on a dry run."""
    copy_workflow(tmp_path)
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    config["methods"]["selora_e150"][key] = value
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "--configfile", "wrong.yaml")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Error validating config file" in output
    assert f"'{key}' was unexpected" in output and "instance['methods']['selora_e150']" in output
    assert "rule finetune" not in output
