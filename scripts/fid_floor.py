from pathlib import Path

from migros.evaluation.fid import FidSettings, run_real_floor_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_real_floor_stage(
    reference_npz=Path(snakemake.input.reference),
    other_split_npz=Path(snakemake.input.other),
    settings=FidSettings.from_config(snakemake.params.settings),
    scores_csv=Path(snakemake.output.csv),
    provenance_json=Path(snakemake.output.json),
    dataset=snakemake.wildcards.dataset,
    method="real_train",  # the report's name for the real-vs-real floor (migros.report.metrics.REAL_TRAIN)
)
