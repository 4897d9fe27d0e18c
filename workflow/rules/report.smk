rule sample_grid:
    input:
        raw="results/{dataset}/generate/{method}/manifest.csv",
        postprocessed="results/{dataset}/postprocess/{method}/manifest.csv",
    output:
        report(
            "results/{dataset}/samples/{method}.png",
            caption="../report/sample_grid.rst",
            category="Synthetic images",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "method": "{method}"},
        ),
    log:
        "results/logs/sample_grid/{dataset}_{method}.log",
    benchmark:
        "results/benchmarks/sample_grid/{dataset}_{method}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/sample_grid.py"


rule reconstruction_grid:
    input:
        manifest="results/{dataset}/vae_reconstruction/manifest.csv",
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        figure=report(
            "results/{dataset}/vae_reconstruction/grid.png",
            caption="../report/reconstruction_grid.rst",
            category="Synthetic images",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "method": "VAE reconstructions (ceiling)"},
        ),
        metrics="results/{dataset}/vae_reconstruction/lesion_contrast.csv",
    params:
        resamples=config["fid"]["bootstrap_resamples"],  # the ceiling's interval, like the FID's
        seed=config["fid"]["seed"],
    log:
        "results/logs/reconstruction_grid/{dataset}.log",
    benchmark:
        "results/benchmarks/reconstruction_grid/{dataset}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/reconstruction_grid.py"


rule training_curves:
    input:
        losses=lambda wildcards: expand(
            "results/{{dataset}}/finetune/{method}/loss.csv", method=adapted_methods(wildcards.dataset)
        ),
        rank_histories=lambda wildcards: expand(
            "results/{{dataset}}/finetune/{method}/rank_history.csv", method=adapted_methods(wildcards.dataset)
        ),
    output:
        report(
            "results/{dataset}/finetune/training.png",
            caption="../report/training_curves.rst",
            category="Fine-tuning",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "loss, adapter size, SeLoRA ranks"},
        ),
    params:
        methods=lambda wildcards: adapted_methods(wildcards.dataset),
    log:
        "results/logs/training_curves/{dataset}.log",
    benchmark:
        "results/benchmarks/training_curves/{dataset}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/training_curves.py"


rule roc_curves:
    input:
        "results/{dataset}/classifier/predictions.csv",
    output:
        report(
            "results/{dataset}/classifier/roc.png",
            caption="../report/roc_curves.rst",
            category="Classifier",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "ROC curves per condition"},
        ),
    log:
        "results/logs/roc_curves/{dataset}.log",
    benchmark:
        "results/benchmarks/roc_curves/{dataset}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/roc_curves.py"


rule privacy_figure:
    input:
        scores=lambda wildcards: expand(
            "results/{{dataset}}/privacy/{method}_scores.csv", method=generated_methods(wildcards.dataset)
        ),
    output:
        report(
            "results/{dataset}/privacy/scores.png",
            caption="../report/privacy_figure.rst",
            category="Privacy",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "membership inference: members vs non-members"},
        ),
    params:
        methods=lambda wildcards: generated_methods(wildcards.dataset),
        kinds=lambda wildcards: [method_kind(method) for method in generated_methods(wildcards.dataset)],
    log:
        "results/logs/privacy_figure/{dataset}.log",
    benchmark:
        "results/benchmarks/privacy_figure/{dataset}.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/privacy_figure.py"


rule metrics:
    input:
        unpack(metric_inputs),
    output:
        report(
            "results/metrics.csv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"table": "all metrics (CSV download)"},
        ),
    params:
        sources={kind: [(dataset, method) for dataset, method, _ in entries] for kind, entries in metric_sources().items()},
    log:
        "results/logs/metrics/metrics.log",
    benchmark:
        "results/benchmarks/metrics/metrics.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/metrics.py"


rule report_tables:
    input:
        metrics="results/metrics.csv",
        comparisons=classifier_comparisons(),
        weights="results/fid/inception",
    output:
        evidence=report("results/tables/evidence.html", caption="../report/evidence.rst", category="Metrics",
                        labels={"table": "1. which differences are distinguishable from noise"}),
        fid=report("results/tables/fid.html", caption="../report/fid.rst", category="Metrics",
                   labels={"table": "FID and KID (Table 1)"}),
        classifier=report("results/tables/classifier.html", caption="../report/classifier.rst", category="Metrics",
                          labels={"table": "classifier (Tables 2-3)"}),
        fidelity=report("results/tables/prompt_fidelity.html", caption="../report/prompt_fidelity.rst",
                        category="Metrics", labels={"table": "prompt fidelity"}),
        memorisation=report("results/tables/memorisation.html", caption="../report/memorisation_table.rst",
                            category="Metrics", labels={"table": "memorisation"}),
        privacy=report("results/tables/privacy.html", caption="../report/privacy.rst", category="Metrics",
                       labels={"table": "privacy: membership inference beside FID and classifier gain"}),
        adapters=report("results/tables/adapters.html", caption="../report/adapters.rst", category="Metrics",
                        labels={"table": "adapter sizes"}),
        config=report("results/tables/config.html", caption="../report/config.rst", category="Configuration",
                      labels={"table": "the exact configuration"}),
    params:
        config=config,
    log:
        "results/logs/report_tables/report_tables.log",
    benchmark:
        "results/benchmarks/report_tables/report_tables.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/report_tables.py"
