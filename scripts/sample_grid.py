from pathlib import Path

from migros.diffusion.sample_grid import write_sample_grid
from migros.logs import log_to_file

log_to_file(snakemake.log[0])
write_sample_grid(Path(snakemake.input.manifest), Path(snakemake.output[0]), title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method}")
