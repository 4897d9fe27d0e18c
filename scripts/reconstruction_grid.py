from pathlib import Path

from migros.jobs import start_job
from migros.report.reconstruction_grid import run_reconstruction_grid_stage

start_job(snakemake.log[0], snakemake.threads)
run_reconstruction_grid_stage(
    dataset=snakemake.wildcards.dataset,
    manifest_csv=Path(snakemake.input.manifest),
    metadata_csv=Path(snakemake.input.metadata),
    figure_png=Path(snakemake.output.figure),
    metrics_csv=Path(snakemake.output.metrics),
    resamples=snakemake.params.resamples,
    seed=snakemake.params.seed,
)
