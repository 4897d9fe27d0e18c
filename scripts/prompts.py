from pathlib import Path

from migros.logs import log_to_file
from migros.prompts import write_prompt_stage

log_to_file(snakemake.log[0])
write_prompt_stage(
    metadata_csv=Path(snakemake.input.metadata),
    train_csv=Path(snakemake.output.train),
    generation_csv=Path(snakemake.output.generation),
    settings=snakemake.params.prompts,
    n_images=snakemake.params.generation["images"],
    seed=snakemake.params.generation["seed"],
)
