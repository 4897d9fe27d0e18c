from pathlib import Path

from migros.jobs import start_job
from migros.phantoms import PhantomSettings, write_demo_dataset

start_job(snakemake.log[0], snakemake.threads)
write_demo_dataset(PhantomSettings.from_config(snakemake.params.settings), Path(snakemake.output[0]),
                   workers=snakemake.threads)
