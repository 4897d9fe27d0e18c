from pathlib import Path

from migros.jobs import start_job
from migros.report.training_curves import plot_training_curves

start_job(snakemake.log[0], snakemake.threads)
runs = {
    method: (Path(loss), Path(ranks))
    for method, loss, ranks in zip(snakemake.params.methods, snakemake.input.losses, snakemake.input.rank_histories)
}
plot_training_curves(runs, title=f"Fine-tuning on {snakemake.wildcards.dataset}", figure_png=Path(snakemake.output[0]))
