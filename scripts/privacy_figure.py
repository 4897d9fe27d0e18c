from pathlib import Path

from migros.jobs import start_job
from migros.report.privacy_figure import plot_privacy_figure

start_job(snakemake.log[0], snakemake.threads)
runs = {
    method: (Path(scores), kind)
    for method, scores, kind in zip(snakemake.params.methods, snakemake.input.scores, snakemake.params.kinds)
}
plot_privacy_figure(runs, title=snakemake.wildcards.dataset, figure_png=Path(snakemake.output[0]))
