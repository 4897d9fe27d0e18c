from pathlib import Path

from migros.jobs import start_job
from migros.phantoms import write_demo_dataset

start_job(snakemake.log[0], snakemake.threads)
write_demo_dataset(snakemake.params.loader, Path(snakemake.output[0]), snakemake.params.demo)
