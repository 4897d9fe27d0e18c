# The blinded reader study (docs/reader_study.md): a pack per dataset for `migros-reader-study serve`, and the
# statistics of the answers exported from it, once reader_study.answers names the export.


rule reader_study_pack:
    input:
        unpack(reader_study_pack_inputs),
    output:
        directory("results/{dataset}/reader_study/pack"),
    params:
        methods=lambda wildcards: list(reader_study_candidates(wildcards.dataset)),
        kinds=lambda wildcards: list(reader_study_candidates(wildcards.dataset).values()),
        settings=reader_study_pack_settings,
    log:
        "results/logs/reader_study/{dataset}_pack.log",
    benchmark:
        "results/benchmarks/reader_study/{dataset}_pack.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/reader_study_pack.py"


rule reader_study_statistics:
    input:
        answers=lambda wildcards: READER_STUDY["answers"][wildcards.dataset],
    output:
        statistics="results/{dataset}/reader_study/statistics.csv",
        figure=report(
            "results/{dataset}/reader_study/preferences.png",
            caption="../report/reader_study.rst",
            category="Reader study",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "preferences, position bias, agreement"},
        ),
    params:
        resamples=READER_STUDY["bootstrap_resamples"],
        seed=READER_STUDY["seed"],
    log:
        "results/logs/reader_study/{dataset}_statistics.log",
    benchmark:
        "results/benchmarks/reader_study/{dataset}_statistics.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/reader_study_statistics.py"
