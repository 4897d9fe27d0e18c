from pathlib import Path

from migros.jobs import start_job
from migros.report.sample_grid import write_sample_grid

start_job(snakemake.log[0], snakemake.threads)
write_sample_grid(
    Path(snakemake.input.raw),
    Path(snakemake.input.postprocessed),
    Path(snakemake.output[0]),
    title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method}",
)
