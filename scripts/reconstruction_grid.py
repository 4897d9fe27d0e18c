from pathlib import Path

from migros.jobs import start_job
from migros.report.reconstruction_grid import write_reconstruction_grid

start_job(snakemake.log[0], snakemake.threads)
write_reconstruction_grid(
    Path(snakemake.input.manifest),
    Path(snakemake.input.metadata),
    Path(snakemake.output[0]),
    title=f"{snakemake.wildcards.dataset} / base model's VAE",
)
