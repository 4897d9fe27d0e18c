from pathlib import Path

from migros.evaluation.classifier import run_classifier_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_classifier_stage(
    metadata_csv=Path(snakemake.input.metadata),
    synthetic_manifests=dict(zip(snakemake.params.augmentation_methods, map(Path, snakemake.input.augmentation))),
    fidelity_manifests=dict(zip(snakemake.params.fidelity_methods, map(Path, snakemake.input.fidelity))),
    settings=snakemake.params.settings,
    per_seed_csv=Path(snakemake.output.per_seed),
    summary_csv=Path(snakemake.output.summary),
    fidelity_csv=Path(snakemake.output.fidelity),
)
