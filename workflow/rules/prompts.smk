rule prompts:
    input:
        metadata="results/{dataset}/slices/metadata.csv",
    output:
        train="results/{dataset}/prompts/train_prompts.csv",
        generation="results/{dataset}/prompts/generation_prompts.csv",
    params:
        prompts=lambda wildcards: dataset_config(wildcards)["prompts"],
        generation=config["generation"],
    log:
        "results/logs/prompts/{dataset}.log",
    benchmark:
        "results/benchmarks/prompts/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/prompts.py"
