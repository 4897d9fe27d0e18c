from pathlib import Path

from migros.jobs import start_job
from migros.report.roc_curves import plot_roc_curves

start_job(snakemake.log[0], snakemake.threads)
plot_roc_curves(Path(snakemake.input[0]), title=f"Tumour classifier on {snakemake.wildcards.dataset}",
                figure_png=Path(snakemake.output[0]))
