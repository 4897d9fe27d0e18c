from pathlib import Path

from migros.evaluation.classifier import summarise_classifier
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
summarise_classifier(
    dataset=snakemake.wildcards.dataset,
    per_seed_csvs=list(map(Path, snakemake.input.per_seed)),
    fidelity_csvs=list(map(Path, snakemake.input.fidelity)),
    prediction_csvs=list(map(Path, snakemake.input.predictions)),
    per_seed_csv=Path(snakemake.output.per_seed),
    metrics_csv=Path(snakemake.output.metrics),
    comparisons_csv=Path(snakemake.output.comparisons),
    fidelity_csv=Path(snakemake.output.fidelity),
    predictions_csv=Path(snakemake.output.predictions),
)
