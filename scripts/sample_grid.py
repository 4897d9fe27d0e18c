from pathlib import Path

from migros.diffusion.sample_grid import write_sample_grid
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
write_sample_grid(Path(snakemake.input.manifest), Path(snakemake.output[0]), title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method}")
