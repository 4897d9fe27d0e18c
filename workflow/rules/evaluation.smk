rule postprocess:
    input:
        manifest="results/{dataset}/generate/{method}/manifest.csv",
    output:
        images=directory("results/{dataset}/postprocess/{method}/images"),
        manifest="results/{dataset}/postprocess/{method}/manifest.csv",
    params:
        settings=postprocess_settings,
    log:
        "results/logs/postprocess/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/postprocess/{dataset}_{method}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/postprocess.py"


rule inception_weights:
    output:
        directory("results/fid/inception"),
    params:
        weights_path=config["fid"]["weights_path"],
    log:
        "results/logs/fid/inception_weights.log",
    benchmark:
        "results/benchmarks/fid/inception_weights.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/inception_weights.py"


rule fid_reference:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
        weights="results/fid/inception",
    output:
        "results/{dataset}/fid/real_{split}.npz",
    params:
        settings=fid_settings,
    log:
        "results/logs/fid/{dataset}_real_{split}.log",
    benchmark:
        "results/benchmarks/fid/{dataset}_real_{split}.tsv"
    threads: 1  # jobs side by side use 2 cores better than one job on both
    resources:
        gpu=1,
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/fid_reference.py"


rule fid:
    input:
        manifest=fid_compared_manifest,
        reference=f"results/{{dataset}}/fid/real_{config['fid']['reference_split']}.npz",
        weights="results/fid/inception",
    output:
        csv="results/{dataset}/fid/{method}.csv",
        json="results/{dataset}/fid/{method}.json",  # weights, reference split and interval settings
    wildcard_constraints:
        method=names_pattern([NO_ADAPTATION, VAE_RECONSTRUCTION, REAL_RESERVE, *TRAINED]),
    params:
        settings=fid_settings,
        # the reconstructions (the test slices) and the reserve hold as many images as the split has
        strict=lambda wildcards: wildcards.method not in (VAE_RECONSTRUCTION, REAL_RESERVE),
    log:
        "results/logs/fid/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/fid/{dataset}_{method}.tsv"
    threads: 1  # jobs side by side use 2 cores better than one job on both
    resources:
        gpu=1,
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/fid.py"


rule fid_floor:
    input:
        reference=f"results/{{dataset}}/fid/real_{config['fid']['reference_split']}.npz",
        other=f"results/{{dataset}}/fid/real_{OTHER_SPLIT[config['fid']['reference_split']]}.npz",
        weights="results/fid/inception",
    output:
        csv="results/{dataset}/fid/real_floor.csv",
        json="results/{dataset}/fid/real_floor.json",  # weights, reference split and interval settings
    params:
        settings=fid_settings,
    log:
        "results/logs/fid/{dataset}_real_floor.log",
    benchmark:
        "results/benchmarks/fid/{dataset}_real_floor.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/fid_floor.py"


rule memorisation:
    input:
        manifest="results/{dataset}/generate/{method}/manifest.csv",
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        pairs="results/{dataset}/memorisation/{method}.csv",
        summary="results/{dataset}/memorisation/{method}.json",
        figure=report(
            "results/{dataset}/memorisation/{method}.png",
            caption="../report/memorisation.rst",
            category="Memorisation",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "method": "{method}"},
        ),
    params:
        settings=memorisation_settings,
    log:
        "results/logs/memorisation/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/memorisation/{dataset}_{method}.tsv"
    threads: 1  # jobs side by side use 2 cores better than one job on both
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/memorisation.py"


rule classifier_seed:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
        augmentation=lambda wildcards: postprocessed_manifests(wildcards.dataset, classifier_methods(wildcards.dataset)),
        fidelity=lambda wildcards: postprocessed_manifests(wildcards.dataset, evaluated_sets(wildcards.dataset)),
        reconstruction="results/{dataset}/vae_reconstruction/manifest.csv",
    output:
        per_seed="results/{dataset}/classifier/seed_{seed}/per_seed.csv",
        fidelity="results/{dataset}/classifier/seed_{seed}/prompt_fidelity.csv",
        predictions="results/{dataset}/classifier/seed_{seed}/predictions.csv",
    params:
        augmentation_methods=lambda wildcards: classifier_methods(wildcards.dataset),
        fidelity_methods=lambda wildcards: evaluated_sets(wildcards.dataset),
        settings=classifier_seed_settings,
    wildcard_constraints:
        seed=r"\d+",
    log:
        "results/logs/classifier/{dataset}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/classifier/{dataset}_seed_{seed}.tsv"
    threads: 1  # measured: two classifiers side by side at one thread each beat one at a time at two
    resources:
        gpu=1,
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/classifier_seed.py"


rule classifier:
    input:
        per_seed=lambda wildcards: classifier_seed_outputs(wildcards.dataset, "per_seed.csv"),
        fidelity=lambda wildcards: classifier_seed_outputs(wildcards.dataset, "prompt_fidelity.csv"),
        predictions=lambda wildcards: classifier_seed_outputs(wildcards.dataset, "predictions.csv"),
    output:
        per_seed="results/{dataset}/classifier/per_seed.csv",
        metrics="results/{dataset}/classifier/metrics.csv",
        comparisons="results/{dataset}/classifier/comparisons.csv",
        fidelity="results/{dataset}/classifier/prompt_fidelity.csv",
        predictions="results/{dataset}/classifier/predictions.csv",  # every test image of every condition and seed
    log:
        "results/logs/classifier/{dataset}.log",
    benchmark:
        "results/benchmarks/classifier/{dataset}.tsv"
    conda:
        "../../envs/evaluation.yaml"
    script:
        "../../scripts/classifier.py"


rule privacy_audit:
    input:
        unpack(privacy_audit_inputs),
    output:
        metrics="results/{dataset}/privacy/{method}.csv",
        scores="results/{dataset}/privacy/{method}_scores.csv",
    params:
        settings=privacy_audit_settings,
        prompts=prompt_settings,
        image_size=lambda wildcards: dataset_config(wildcards)["image_size"],
        kind=lambda wildcards: method_kind(wildcards.method),
    log:
        "results/logs/privacy_audit/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/privacy_audit/{dataset}_{method}.tsv"
    threads: 1  # jobs side by side use 2 cores better than one job on both
    resources:
        gpu=1,  # the UNet, 2 x timesteps x noise_draws passes per audited image, 1 x per auxiliary slice
    conda:
        "../../envs/diffusion.yaml"  # loads the base model and the adapter with diffusers and peft
    script:
        "../../scripts/privacy_audit.py"
