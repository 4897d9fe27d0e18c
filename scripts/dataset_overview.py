from pathlib import Path

from migros.data.overview import write_overview
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
write_overview(
    metadata_csv=Path(snakemake.input.metadata),
    excluded_csv=Path(snakemake.input.excluded),
    figure_png=Path(snakemake.output.figure),
    summary_path=Path(snakemake.output.summary),
    dataset=snakemake.wildcards.dataset,
)
