from pathlib import Path

from migros.diffusion.finetune import TrainingSettings, run_finetune_stage
from migros.jobs import start_job

start_job(snakemake.log[0], snakemake.threads)
run_finetune_stage(
    base_model_dir=Path(snakemake.input.base_model),
    train_prompts_csv=Path(snakemake.input.train_prompts),
    method_name=snakemake.wildcards.method,
    method=snakemake.params.method,
    settings=TrainingSettings.from_config(snakemake.params.settings),
    image_size=snakemake.params.image_size,
    checkpoint_dir=Path(snakemake.params.checkpoint_dir),
    adapter_dir=Path(snakemake.output.adapter),
    loss_csv=Path(snakemake.output.loss),
    rank_history_csv=Path(snakemake.output.rank_history),
    summary_json=Path(snakemake.output.summary),
    proxy_non_members_csv=Path(snakemake.input.proxy_non_members) if "proxy_non_members" in snakemake.input.keys() else None,
)
