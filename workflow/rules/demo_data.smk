rule demo_data:
    output:
        directory("results/{dataset}/demo_data"),
    params:
        settings=phantom_settings,
    log:
        "results/logs/demo_data/{dataset}.log",
    benchmark:
        "results/benchmarks/demo_data/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/demo_data.py"
