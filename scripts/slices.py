import sys
from pathlib import Path

from migros.data.slices import SliceSettings, run_slice_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
metadata, excluded, summary = run_slice_stage(
    SliceSettings.from_config(snakemake.params.settings),
    root=Path(snakemake.input[0]),
    images_dir=Path(snakemake.output.images),
    masks_dir=Path(snakemake.output.masks),
)
metadata.to_csv(snakemake.output.metadata, index=False)
excluded.to_csv(snakemake.output.excluded, index=False)
# start_job sends stderr to the log; the summary (and any skipped check) also goes to the console
print("\n".join([f"slices {snakemake.wildcards.dataset}:", *summary]), file=sys.__stderr__)
