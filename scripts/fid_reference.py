from pathlib import Path

from migros.evaluation.fid import FidSettings, run_reference_features_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_reference_features_stage(
    metadata_csv=Path(snakemake.input.metadata),
    split=snakemake.wildcards.split,
    settings=FidSettings.from_config(snakemake.params.settings),
    features_npz=Path(snakemake.output[0]),
)
