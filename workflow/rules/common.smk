import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


# Fills in the schema's defaults (nested sections, $refs and if/then branches too): the schema is the only place
# for defaults, and every stage gets its config section complete.
validate(config, schema="../schemas/config.schema.yaml", set_default=True)

DATASETS = list(config["datasets"])

for _name, _settings in config["datasets"].items():
    if _missing := sorted(set(_settings["methods"]) - set(config["methods"])):
        raise WorkflowError(f"datasets.{_name}.methods names {_missing}, which are not entries of `methods`")
    if _missing := sorted(set(_settings["classifier_methods"]) - set(_settings["methods"])):
        raise WorkflowError(f"datasets.{_name}.classifier_methods names {_missing}, not in datasets.{_name}.methods")
NO_ADAPTATION = "no_adaptation"  # generation with the base model alone: the lower reference
VAE_RECONSTRUCTION = "vae_reconstruction"  # the real test slices through the base model's VAE: the ceiling
REAL_RESERVE = "real_reserve"  # the reserve split's real slices, scored as a method: the positive control
# Methods that train their own generator instead of adapting the base model; each has its rule, which writes the
# same generated set (images/ + manifest.csv) as rule generate, so every later stage treats them alike.
GAN_KINDS = ("gan", "stylegan3")


# Training replicates (finetune.replicates): every trained method's generated set once per replicate. The first
# keeps the method's name, replicate k >= 1 is the set `<method>@<k>`, trained with seed + k and generated from its
# own prompts and image seeds, so that adding a replicate adds its own jobs and reruns no other replicate's.
REPLICATES = config["finetune"]["replicates"]
REPLICATE_SEPARATOR = "@"  # migros.evaluation.replicates.SEPARATOR


def replicate_sets(method):
    """The generated sets of a method, one per training replicate (one for no_adaptation and the reserve)."""
    if method in (NO_ADAPTATION, REAL_RESERVE):
        return [method]
    return [method, *(f"{method}{REPLICATE_SEPARATOR}{replicate}" for replicate in range(1, REPLICATES))]


def base_method(name):
    """The `methods` entry of a generated set: `lora_r4@2` -> `lora_r4`."""
    return name.split(REPLICATE_SEPARATOR)[0]


def replicate_of(name):
    return int(name.split(REPLICATE_SEPARATOR)[1]) if REPLICATE_SEPARATOR in name else 0


def names_pattern(names):
    """A wildcard constraint matching exactly these names (one that matches nothing if there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def method_kind(method):
    """A method's (or a replicate's) config kind; None for no_adaptation (the base model alone) and the reserve."""
    return None if method in (NO_ADAPTATION, REAL_RESERVE) else config["methods"][base_method(method)]["kind"]


def methods_of_kind(kinds):
    """Every replicate's set of the methods of these kinds."""
    return [name for method in config["methods"] if method_kind(method) in kinds for name in replicate_sets(method)]


TRAINED = [name for method in config["methods"] for name in replicate_sets(method)]  # every replicate's set
ADAPTED = [name for name in TRAINED if method_kind(name) not in GAN_KINDS]
ADAPTED_PATTERN = names_pattern(ADAPTED)  # the sets of rule finetune
DIFFUSION_PATTERN = names_pattern([NO_ADAPTATION, *ADAPTED])  # the generated sets of rule generate


wildcard_constraints:
    dataset="|".join(DATASETS),
    method=names_pattern([NO_ADAPTATION, REAL_RESERVE, *TRAINED]),
    split="train|test",


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def uses_demo(dataset):
    return config["datasets"][dataset]["root"] == "demo"


def dataset_root(wildcards):
    """The folder the slice stage reads: the phantoms of rule demo_data, or the user's dataset."""
    if uses_demo(wildcards.dataset):
        return f"results/{wildcards.dataset}/demo_data"
    return config["datasets"][wildcards.dataset]["root"]


# One function per stage: the stage's settings section (the validated config's plain values, so that a changed
# setting reruns exactly the rules that use it), which its script turns into the stage's settings dataclass.


def phantom_settings(wildcards):
    """migros.phantoms.PhantomSettings: the dataset's `demo` section and its loader."""
    return {"loader": dataset_config(wildcards)["loader"], **dataset_config(wildcards)["demo"]}


def slice_settings(wildcards):
    """migros.data.slices.SliceSettings: only what changes the slices, so that editing e.g. prompt thresholds
    does not rerun this stage."""
    settings = dataset_config(wildcards)
    return {key: settings[key] for key in ("loader", "image_size", "intensity_percentiles", "field_of_view_mm", "split")}


def prompt_settings(wildcards):
    """migros.prompts.PromptSettings"""
    return dataset_config(wildcards)["prompts"]


def generation_prompt_settings(wildcards):
    """migros.prompts.GenerationPromptSettings: the prompts drawn, not how they are sampled; replicate k's from
    seed + k x images, so that no two replicates share an image seed."""
    images, seed = config["generation"]["images"], config["generation"]["seed"]
    replicate = int(wildcards.replicate.removeprefix(REPLICATE_SEPARATOR) or 0)
    return {"images": images, "seed": seed + replicate * images}


def generation_prompts(wildcards):
    """The generation prompts of a generated set: its replicate's (migros.prompts.generation_prompts)."""
    replicate = replicate_of(wildcards.method)
    suffix = f"{REPLICATE_SEPARATOR}{replicate}" if replicate else ""
    return f"results/{wildcards.dataset}/prompts/generation_prompts{suffix}.csv"


def base_model_settings(wildcards):
    """migros.diffusion.base_model.BaseModelSettings"""
    return config["base_model"]


def training_settings(wildcards):
    """migros.diffusion.finetune.TrainingSettings of one replicate (its seed); a method's own overrides (e.g.
    epochs) are in its entry."""
    settings = {key: value for key, value in config["finetune"].items() if key != "replicates"}
    return {**settings, "seed": settings["seed"] + replicate_of(wildcards.method)}


def method_entry(wildcards):
    """The method's `methods` entry: its kind and settings (the adapter's, or MethodSettings.from_method's); a GAN
    replicate's seed moved on by its replicate number."""
    entry = config["methods"][base_method(wildcards.method)]
    if "seed" in entry:
        return {**entry, "seed": entry["seed"] + replicate_of(wildcards.method)}
    return entry


def generation_settings(wildcards):
    """migros.diffusion.generate.GenerationSettings: the sampler's keys, not those that draw the prompts."""
    return {key: value for key, value in config["generation"].items() if key not in ("images", "seed")}


def memorisation_settings(wildcards):
    """migros.evaluation.memorisation.MemorisationSettings"""
    return config["memorisation"]


def privacy_audit_settings(wildcards):
    """migros.evaluation.membership.AuditSettings"""
    return config["privacy_audit"]


def defended(method):
    """Whether a method adapts with a privacy defence (a `privacy` entry: migros.diffusion.privacy_defence)."""
    return method in ADAPTED and "privacy" in config["methods"][base_method(method)]


def proxy_non_member_input(wildcards):
    """The non-members of a defended method's proxy attack model (rule proxy_non_members); none otherwise."""
    if defended(wildcards.method):
        return {"proxy_non_members": f"results/{wildcards.dataset}/prompts/proxy_non_members.csv"}
    return {}


def finetune_inputs(wildcards):
    return {
        "base_model": "results/base_model",
        "train_prompts": f"results/{wildcards.dataset}/prompts/train_prompts.csv",
        **proxy_non_member_input(wildcards),
    }


def privacy_audit_inputs(wildcards):
    """The real slices (members: the training prompts; non-members: the test slices), the generated set, and
    for the diffusion methods the base model, the adapter and the learned attack's auxiliary non-members: the
    slices in neither split (rule proxy_non_members, a defended method's proxy learnt the same ones). A GAN has
    no denoising loss: distance attack only."""
    inputs = {
        "train_prompts": f"results/{wildcards.dataset}/prompts/train_prompts.csv",
        "metadata": f"results/{wildcards.dataset}/slices/metadata.csv",
        "manifest": f"results/{wildcards.dataset}/generate/{wildcards.method}/manifest.csv",
    }
    if method_kind(wildcards.method) not in GAN_KINDS:
        inputs["base_model"] = "results/base_model"
        # checked to hold no audited image or patient
        inputs["auxiliary_non_members"] = f"results/{wildcards.dataset}/prompts/proxy_non_members.csv"
    if wildcards.method in ADAPTED:
        inputs["adapter"] = f"results/{wildcards.dataset}/finetune/{wildcards.method}/adapter"
    return inputs


def methods_of(dataset):
    """The methods run on a dataset (names from config `methods`): adapters and GANs."""
    return config["datasets"][dataset]["methods"]


def trained_sets(dataset):
    """Every replicate's generated set of every method of a dataset."""
    return [name for method in methods_of(dataset) for name in replicate_sets(method)]


def adapted_methods(dataset):
    """The sets of a dataset that fine-tune the base model (rule finetune), every replicate."""
    return [name for name in trained_sets(dataset) if name in ADAPTED]


def gan_methods(dataset, kind):
    """The sets of a dataset that train a GAN of `kind` instead, every replicate."""
    return [name for name in trained_sets(dataset) if method_kind(name) == kind]


def generation_inputs(wildcards):
    inputs = {
        "base_model": "results/base_model",
        "prompts": generation_prompts(wildcards),
    }
    if wildcards.method != NO_ADAPTATION:
        inputs["adapter"] = f"results/{wildcards.dataset}/finetune/{wildcards.method}/adapter"
    return inputs


def generated_methods(dataset):
    """Every generated set of a dataset: the base model's and each method's, every replicate."""
    return [NO_ADAPTATION, *trained_sets(dataset)]


def has_reserve(dataset):
    """Whether the dataset keeps a reserve split of real patients: the positive control real_reserve."""
    return config["datasets"][dataset]["split"]["reserve"] > 0


def control_sets(dataset):
    return [REAL_RESERVE] if has_reserve(dataset) else []


def evaluated_sets(dataset):
    """Every set that the evaluation stages score as a method: the generated sets and the positive control."""
    return [*generated_methods(dataset), *control_sets(dataset)]


def classifier_methods(dataset):
    """The sets whose images augment the classifier (paper: the SeLoRA variants; every replicate), and the
    positive control."""
    chosen = config["datasets"][dataset]["classifier_methods"]
    return [*(name for method in chosen for name in replicate_sets(method)), *control_sets(dataset)]


def fid_compared_manifest(wildcards):
    """Raw generated images, as the paper scores them, or the VAE's reconstructions of the real test slices."""
    if wildcards.method == VAE_RECONSTRUCTION:
        return f"results/{wildcards.dataset}/vae_reconstruction/manifest.csv"
    return f"results/{wildcards.dataset}/generate/{wildcards.method}/manifest.csv"


def postprocessed_manifests(dataset, methods):
    return [f"results/{dataset}/postprocess/{method}/manifest.csv" for method in methods]


def postprocess_settings(wildcards):
    """migros.evaluation.postprocess.PostprocessSettings: the shared section and the dataset's switch."""
    return {**config["postprocess"], "enabled": dataset_config(wildcards)["postprocess"]}


OTHER_SPLIT = {"test": "train", "train": "test"}


def fid_settings(wildcards):
    """migros.evaluation.fid.FidSettings: the fid section without the split (which only picks input files), plus
    where the weights were put."""
    settings = {key: value for key, value in config["fid"].items() if key != "reference_split"}
    return {**settings, "weights_cache_dir": "results/fid/inception"}


def classifier_seed_settings(wildcards):
    """migros.evaluation.classifier_settings.ClassifierSettings of one seed's job: the shared section with that seed
    only (so that adding a seed to the list reruns no other seed's job) and the dataset's image size."""
    return {**config["classifier"], "seeds": [int(wildcards.seed)], "image_size": dataset_config(wildcards)["image_size"]}


def classifier_seed_outputs(dataset, name):
    """A file of every seed's classifier job of a dataset, in the config's order of seeds."""
    return [f"results/{dataset}/classifier/seed_{seed}/{name}" for seed in config["classifier"]["seeds"]]


READER_STUDY = config["reader_study"]
if _unknown := sorted(set(READER_STUDY["methods"] or []) - {NO_ADAPTATION, *config["methods"]}):
    raise WorkflowError(f"reader_study.methods names {_unknown}, which are not entries of `methods`")
if _unknown := sorted(set(READER_STUDY["answers"]) - set(DATASETS)):
    raise WorkflowError(f"reader_study.answers names {_unknown}, which are not entries of `datasets`")
READER_STUDY_PACK_KEYS = ("pairing", "pairs_per_class", "calibration_per_class", "image_size", "seed", "question",
                          "power_goal")


READER_STUDY_PAPER_KINDS = ("selora", *GAN_KINDS)  # the paper's pairing: its best SeLoRA against the GAN


def reader_study_candidates(dataset):
    """{method: config kind} of the methods a dataset's reader study may compare: those of reader_study.methods
    (null: all) that the dataset runs; for the paper's pairing only its SeLoRA and GAN methods, so that no other
    method's rerun rebuilds the pack."""
    chosen = READER_STUDY["methods"]
    names = methods_of(dataset) if chosen is None else [name for name in generated_methods(dataset) if name in chosen]
    if READER_STUDY["pairing"] == "paper":
        names = [name for name in names if method_kind(name) in READER_STUDY_PAPER_KINDS]
    return {name: method_kind(name) for name in names}


def reader_study_comparable(dataset):
    """Whether the dataset's candidates allow the pairing: a selora method and a GAN (paper), or two methods."""
    kinds = list(reader_study_candidates(dataset).values())
    if READER_STUDY["pairing"] == "paper":
        return "selora" in kinds and any(kind in GAN_KINDS for kind in kinds)
    return len(kinds) >= 2


def reader_study_datasets():
    """The datasets that get a reader-study pack (reader_study.build)."""
    if READER_STUDY["build"] == "auto":
        return [dataset for dataset in DATASETS if reader_study_comparable(dataset)]
    if READER_STUDY["build"] is True:
        if _lacking := [dataset for dataset in DATASETS if not reader_study_comparable(dataset)]:
            raise WorkflowError(f"reader_study.build is true, but {_lacking} have nothing to compare with pairing "
                                f"{READER_STUDY['pairing']!r}: set build to auto, or list methods that they run")
        return DATASETS
    return []


def reader_study_pack_settings(wildcards):
    """migros.reader_study.pack.PackSettings: the keys that change the pack, so that adding answers reruns none."""
    return {key: READER_STUDY[key] for key in READER_STUDY_PACK_KEYS}


def reader_study_pack_inputs(wildcards):
    """Each candidate's generated set and FID scores (paper: the best FIDs pick the pair), and the real slices."""
    methods = reader_study_candidates(wildcards.dataset)
    return {
        "manifests": [f"results/{wildcards.dataset}/generate/{method}/manifest.csv" for method in methods],
        "fids": [f"results/{wildcards.dataset}/fid/{method}.csv" for method in methods],
        "metadata": f"results/{wildcards.dataset}/slices/metadata.csv",
    }


def classifier_comparisons():
    return expand("results/{dataset}/classifier/comparisons.csv", dataset=DATASETS)


def metric_sources():
    """Every per-job result that goes into results/metrics.csv: {kind: [(dataset, method, path), ...]}."""
    sources = {kind: [] for kind in ("fid", "fid_floor", "memorisation", "finetune", "gan", "stylegan3", "classifier",
                                          "privacy", "lesion_contrast", "reader_study")}
    for dataset in READER_STUDY["answers"]:
        sources["reader_study"].append((dataset, None, f"results/{dataset}/reader_study/statistics.csv"))
    for dataset in DATASETS:
        sources["fid_floor"].append((dataset, None, f"results/{dataset}/fid/real_floor.csv"))
        sources["classifier"].append((dataset, None, f"results/{dataset}/classifier/metrics.csv"))
        sources["fid"].append((dataset, VAE_RECONSTRUCTION, f"results/{dataset}/fid/{VAE_RECONSTRUCTION}.csv"))
        sources["lesion_contrast"].append(
            (dataset, VAE_RECONSTRUCTION, f"results/{dataset}/vae_reconstruction/lesion_contrast.csv"))
        for method in evaluated_sets(dataset):
            sources["fid"].append((dataset, method, f"results/{dataset}/fid/{method}.csv"))
            sources["memorisation"].append((dataset, method, f"results/{dataset}/memorisation/{method}.json"))
        for method in generated_methods(dataset):  # the control has no model to attack
            sources["privacy"].append((dataset, method, f"results/{dataset}/privacy/{method}.csv"))
        for method in adapted_methods(dataset):
            sources["finetune"].append((dataset, method, f"results/{dataset}/finetune/{method}/summary.json"))
        for kind in GAN_KINDS:
            for method in gan_methods(dataset, kind):
                sources[kind].append((dataset, method, f"results/{dataset}/{kind}/{method}/summary.json"))
    return sources


def metric_inputs(wildcards):
    return {kind: [path for _, _, path in entries] for kind, entries in metric_sources().items()}


def all_outputs():
    outputs = expand(
        [
            "results/{dataset}/prompts/train_prompts.csv",
            "results/{dataset}/slices/overview.png",
            "results/{dataset}/slices/summary.html",
            "results/{dataset}/finetune/training.png",
            "results/{dataset}/privacy/scores.png",
            "results/{dataset}/vae_reconstruction/grid.png",
            "results/{dataset}/classifier/roc.png",
        ],
        dataset=DATASETS,
    )
    for dataset in DATASETS:
        outputs += expand(
            ["results/{dataset}/samples/{method}.png", "results/{dataset}/memorisation/{method}.png"],
            dataset=dataset,
            method=evaluated_sets(dataset),
        )
    outputs += expand("results/{dataset}/reader_study/pack", dataset=reader_study_datasets())
    outputs += expand("results/{dataset}/reader_study/preferences.png", dataset=list(READER_STUDY["answers"]))
    return outputs + ["results/metrics.csv", "results/tables/fid.html", "results/tables/privacy.html"]
