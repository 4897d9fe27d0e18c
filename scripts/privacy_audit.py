from pathlib import Path

from migros.evaluation.membership import AuditSettings, run_audit_stage
from migros.jobs import start_job
from migros.prompts import PromptSettings

start_job(snakemake.log[0], snakemake.threads)

run_audit_stage(
    base_model_dir=Path(snakemake.input.base_model) if "base_model" in snakemake.input.keys() else None,
    adapter_dir=Path(snakemake.input.adapter) if "adapter" in snakemake.input.keys() else None,
    train_prompts_csv=Path(snakemake.input.train_prompts),
    metadata_csv=Path(snakemake.input.metadata),
    manifest_csv=Path(snakemake.input.manifest),
    prompt_settings=PromptSettings.from_config(snakemake.params.prompts),
    settings=AuditSettings.from_config(snakemake.params.settings),
    image_size=snakemake.params.image_size,
    dataset=snakemake.wildcards.dataset,
    method=snakemake.wildcards.method,
    kind=snakemake.params.kind,
    metrics_csv=Path(snakemake.output.metrics),
    scores_csv=Path(snakemake.output.scores),
    auxiliary_non_members_csv=(Path(snakemake.input.auxiliary_non_members)
                               if "auxiliary_non_members" in snakemake.input.keys() else None),
)
