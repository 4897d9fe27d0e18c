from pathlib import Path

from migros.logs import log_to_file
from migros.phantoms import write_demo_dataset

log_to_file(snakemake.log[0])
write_demo_dataset(snakemake.params.loader, Path(snakemake.output[0]), snakemake.params.demo)
