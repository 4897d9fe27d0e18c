from pathlib import Path

from migros.evaluation.fid import FidSettings, run_fid_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_fid_stage(
    manifest_csv=Path(snakemake.input.manifest),
    reference_npz=Path(snakemake.input.reference),
    settings=FidSettings.from_config(snakemake.params.settings),
    scores_csv=Path(snakemake.output.csv),
    provenance_json=Path(snakemake.output.json),
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    strict=snakemake.params.strict,
)
