import sys
from pathlib import Path

from migros.data.slices import run_slice_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
settings = snakemake.params.settings
metadata, excluded, summary = run_slice_stage(
    loader=settings["loader"],
    root=Path(snakemake.input[0]),
    image_size=settings["image_size"],
    intensity_percentiles=tuple(settings["intensity_percentiles"]),
    n_train=settings["split"]["train"],
    n_test=settings["split"]["test"],
    seed=settings["split"]["seed"],
    images_dir=Path(snakemake.output.images),
    masks_dir=Path(snakemake.output.masks),
    fov_mm=settings.get("field_of_view_mm"),
)
metadata.to_csv(snakemake.output.metadata, index=False)
excluded.to_csv(snakemake.output.excluded, index=False)
# start_job sends stderr to the log; the summary (and any skipped check) also goes to the console
print("\n".join([f"slices {snakemake.wildcards.dataset}:", *summary]), file=sys.__stderr__)
