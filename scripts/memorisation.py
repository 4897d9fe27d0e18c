from pathlib import Path

from migros.evaluation.memorisation import MemorisationSettings, run_memorisation_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_memorisation_stage(
    manifest_csv=Path(snakemake.input.manifest),
    metadata_csv=Path(snakemake.input.metadata),
    settings=MemorisationSettings.from_config(snakemake.params.settings),
    pairs_csv=Path(snakemake.output.pairs),
    summary_json=Path(snakemake.output.summary),
    figure_png=Path(snakemake.output.figure),
    title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.method}",
)
