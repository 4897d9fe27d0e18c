rule demo_data:
    output:
        directory("results/{dataset}/demo_data"),
    params:
        loader=lambda wildcards: dataset_config(wildcards)["loader"],
        demo=lambda wildcards: dataset_config(wildcards)["demo"],
    log:
        "results/logs/demo_data/{dataset}.log",
    benchmark:
        "results/benchmarks/demo_data/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/demo_data.py"
