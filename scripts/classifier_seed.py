from pathlib import Path

from migros.evaluation.classifier import ClassifierSettings, run_classifier_seeds
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_classifier_seeds(
    metadata_csv=Path(snakemake.input.metadata),
    synthetic_manifests=dict(zip(snakemake.params.augmentation_methods, map(Path, snakemake.input.augmentation))),
    fidelity_manifests=dict(zip(snakemake.params.fidelity_methods, map(Path, snakemake.input.fidelity))),
    settings=ClassifierSettings.from_config(snakemake.params.settings),
    per_seed_csv=Path(snakemake.output.per_seed),
    fidelity_csv=Path(snakemake.output.fidelity),
    predictions_csv=Path(snakemake.output.predictions),
    reconstruction_manifest=Path(snakemake.input.reconstruction),
)
