"""The Snakemake workflow end to end on a tiny configuration, run by Snakemake itself."""

import json
from collections import Counter

import pandas as pd
import yaml
from figure_checks import drawn_fraction
from workflow_run import REPO, copy_workflow, dry_run, snakemake, tiny_config

# finished_run, the complete tiny run, is a session fixture of conftest.py: test_reruns.py dry-runs the same run.


def test_lint_is_clean():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_demo_run_writes_slices_and_prompts(finished_run):
    for dataset in ("brats", "picai"):
        metadata = pd.read_csv(finished_run / f"results/{dataset}/slices/metadata.csv")
        assert (metadata.groupby("split").label.sum()[["train", "test"]] == 2).all()
        assert all((finished_run / path).is_file() for path in metadata.image)
        prompts = pd.read_csv(finished_run / f"results/{dataset}/prompts/generation_prompts.csv")
        assert len(prompts) == 20 and prompts.label.sum() == 10
        assert drawn_fraction(finished_run / f"results/{dataset}/slices/overview.png") > 0.1
        assert (finished_run / f"results/logs/slices/{dataset}.log").is_file()
        assert (finished_run / f"results/benchmarks/slices/{dataset}.tsv").is_file()
    excluded = pd.read_csv(finished_run / "results/picai/slices/excluded.csv")
    assert len(excluded) > 0 and excluded.reason.notna().all()


def test_demo_run_evaluates_every_method(finished_run):
    metrics = pd.read_csv(finished_run / "results/metrics.csv")
    for dataset in ("brats", "picai"):
        rows = metrics[metrics.dataset == dataset]
        fid = rows[rows.metric == "fid"].set_index("method")
        defended = ["lora_r4_private"] if dataset == "brats" else []  # tiny.yaml defends one method on BraTS
        generated = ["no_adaptation", "lora_r4", "selora_l1.00", "cgan", *defended]
        assert set(fid.index) == {*generated, "real_train", "vae_reconstruction", "real_reserve"}
        assert (fid.value > 0).all() and (fid.loc[generated, "n"] == 8).all()
        assert fid.loc["real_reserve", "n"] == 4  # the positive control: tiny.yaml's reserve of 4 real slices
        assert (fid.lower <= fid.value).all() and (fid.value <= fid.upper).all()
        test_slices = (pd.read_csv(finished_run / f"results/{dataset}/slices/metadata.csv").split == "test").sum()
        assert fid.loc["vae_reconstruction", "n"] == test_slices  # every test slice, not max_generated of them
        auc = rows[rows.metric == "classifier_auc"].set_index("method")
        tstr = {f"synthetic_only:{method}" for method in [*generated, "real_reserve"]}
        assert set(auc.index) == {"real_only", "selora_l1.00", "cgan", "real_reserve", "vae_reconstruction", *tstr}
        assert (auc.n == 2).all() and auc.value.between(0, 1).all()
        steps = rows[rows.metric == "classifier_optimizer_steps"]
        assert set(steps.value) == {2}  # tiny.yaml's budget, the same for every condition
        comparisons = pd.read_csv(finished_run / f"results/{dataset}/classifier/comparisons.csv")
        assert set(zip(comparisons.method, comparisons.baseline)) == {
            ("selora_l1.00", "real_only"), ("cgan", "real_only"), ("real_reserve", "real_only"),
            ("vae_reconstruction", "real_only"), ("selora_l1.00", "cgan"), ("selora_l1.00", "real_reserve"),
            ("cgan", "real_reserve")}
        predictions = pd.read_csv(finished_run / f"results/{dataset}/classifier/predictions.csv")
        assert len(predictions) == test_slices * 2 * predictions.condition.nunique()  # every test slice, 2 seeds
        assert drawn_fraction(finished_run / f"results/{dataset}/classifier/roc.png") > 0.03
        fidelity = rows[rows.metric == "fidelity_tumour_prompts"]
        assert set(fidelity.method) == {*generated, "real_reserve"}
        assert rows[rows.metric == "memorisation_median_ssim"].value.between(-1, 1).all()
        training = rows[rows.metric == "trainable_parameters"].set_index("method")
        assert set(training.index) == {"lora_r4", "selora_l1.00", "cgan", *defended} and (training.value > 0).all()
        assert rows[(rows.method == "cgan") & (rows.metric == "steps")].value.tolist() == [3]
        assert rows[(rows.method == "cgan") & (rows.metric == "final_rank_total")].empty  # a GAN has no ranks
        for method in generated:
            postprocessed = pd.read_csv(finished_run / f"results/{dataset}/postprocess/{method}/manifest.csv")
            assert len(postprocessed) == 20 and all((finished_run / path).is_file() for path in postprocessed.file)
            assert (finished_run / f"results/{dataset}/samples/{method}.png").is_file()
        # the tiny run has fewer test slices than the grid has columns: ~0.14 drawn; a figure with only its titles ~0.01
        assert drawn_fraction(finished_run / f"results/{dataset}/vae_reconstruction/grid.png") > 0.1
        kept = rows[rows.metric == "vae_lesion_contrast_kept"]
        slices = pd.read_csv(finished_run / f"results/{dataset}/slices/metadata.csv")
        test_tumours = ((slices.split == "test") & (slices.label == 1)).sum()
        assert kept.method.tolist() == ["vae_reconstruction"] and 0 <= kept.n.iloc[0] <= test_tumours
        audit = rows[rows.metric.str.startswith("mi_")]
        aucs = audit[audit.metric.str.endswith("_auc")]
        assert set(aucs.method) == set(generated) and aucs.value.between(0, 1).all()
        assert (audit.lower <= audit.upper).all() and audit.value.between(0, 1).all()
        assert set(aucs[aucs.method == "lora_r4"].metric) == {"mi_loss_auc", "mi_loss_difference_auc", "mi_learned_auc",
                                                              "mi_distance_auc"}
        assert set(aucs[aucs.method == "no_adaptation"].metric) == {"mi_loss_auc", "mi_learned_auc", "mi_distance_auc"}
        assert set(aucs[aucs.method == "cgan"].metric) == {"mi_distance_auc"}  # no denoising loss
        scores = pd.read_csv(finished_run / f"results/{dataset}/privacy/lora_r4_scores.csv")
        assert (scores.role == "member").sum() == (scores.role == "non_member").sum() == audit.n.iloc[0] / 2
        assert drawn_fraction(finished_run / f"results/{dataset}/privacy/scores.png") > 0.05
    assert "not applicable: no denoising loss" in (finished_run / "results/tables/privacy.html").read_text()
    fid_table = (finished_run / "results/tables/fid.html").read_text()
    assert "NOT comparable" in fid_table and "SHA-256" in fid_table


def test_privacy_defence_trains_its_proxy_on_slices_the_audit_does_not_use(finished_run):
    """lora_r4_private (tiny.yaml, BraTS): the proxy's non-members are unused slices only, its losses are logged,
    and the audit ran on the defended adapter."""
    metadata = pd.read_csv(finished_run / "results/brats/slices/metadata.csv")
    proxy = pd.read_csv(finished_run / "results/brats/prompts/proxy_non_members.csv")
    split_of = dict(zip(metadata.image, metadata.split))
    assert len(proxy) > 0 and {split_of[image] for image in proxy.image} == {"unused"}
    assert proxy.label.sum() * 2 == len(proxy)  # balanced
    # PI-CAI has no defended method: its unused slices are there for the audit's learned attack
    picai = pd.read_csv(finished_run / "results/picai/slices/metadata.csv")
    picai_split_of = dict(zip(picai.image, picai.split))
    picai_auxiliary = pd.read_csv(finished_run / "results/picai/prompts/proxy_non_members.csv")
    assert {picai_split_of[image] for image in picai_auxiliary.image} == {"unused"}
    losses = pd.read_csv(finished_run / "results/brats/finetune/lora_r4_private/loss.csv")
    assert {"proxy_member_loss", "proxy_loss"} <= set(losses.columns) and losses.proxy_loss.notna().all()
    assert "proxy_loss" not in pd.read_csv(finished_run / "results/brats/finetune/lora_r4/loss.csv").columns
    summary = json.loads((finished_run / "results/brats/finetune/lora_r4_private/summary.json").read_text())
    assert summary["privacy_defence"] == "stable_privatelora" and summary["proxy_non_members"] == len(proxy)
    audit = pd.read_csv(finished_run / "results/brats/privacy/lora_r4_private.csv")
    assert "mi_loss_difference_auc" in set(audit.metric)
    privacy_page = (finished_run / "results/tables/privacy.html").read_text()
    assert "stable_privatelora" in privacy_page and "lora_r4_private" in privacy_page


def test_report_is_written(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (finished_run / "report.html").stat().st_size > 100_000


def test_second_invocation_has_nothing_to_do(finished_run):
    result = snakemake(finished_run, "--configfile", "tiny.yaml", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_wrong_config_key_is_named(tmp_path):
    workdir = copy_workflow(tmp_path)
    config = tiny_config()
    config["datasets"]["brats"]["image_sise"] = 64
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--configfile", "bad.yaml", "-n")
    assert result.returncode != 0
    assert "image_sise" in result.stdout + result.stderr


def test_paper_config_resolves_on_phantom_folders(finished_run):
    """Dry run of config/paper.yaml with the dataset roots pointed at folders in the real layouts."""
    config = yaml.safe_load((finished_run / "config/paper.yaml").read_text())
    for dataset in ("brats", "picai"):
        config["datasets"][dataset]["root"] = str(finished_run / f"results/{dataset}/demo_data")
    (finished_run / "paper_on_phantoms.yaml").write_text(yaml.safe_dump(config))
    jobs = Counter(rule for rule, _ in dry_run(finished_run, "--configfile", "paper_on_phantoms.yaml", "--forceall"))
    del jobs["all"]
    # 8 methods per dataset fine-tuned (Table 1's five, ARENA, AdaLoRA and LoRA with the privacy defence) and 2
    # StyleGAN3 methods, each trained as 3 replicates: 30 generated sets, with no_adaptation's 31, all audited;
    # with the positive control (real_reserve) 32 sets scored per dataset
    per_set = {"postprocess": 64, "memorisation": 64, "sample_grid": 64, "privacy_audit": 62}
    per_dataset = {"slices": 2, "dataset_overview": 2, "train_prompts": 2, "fid_floor": 2, "real_reserve": 2,
                   "classifier": 2, "roc_curves": 2, "training_curves": 2, "vae_reconstruction": 2,
                   "reconstruction_grid": 2, "privacy_figure": 2, "proxy_non_members": 2}
    per_dataset["generation_prompts"] = 2 * 3  # a prompt file per replicate
    per_set["fid"] = 64 + 2  # and the VAE reconstructions of each dataset
    once = {"base_model": 1, "inception_weights": 1, "metrics": 1, "report_tables": 1}
    # StyleGAN3, each dataset's two methods × 3 replicates: a pre-flight, a network per class and the merge of their
    # images; the user's paths are placeholders, which the pre-flight job checks when it starts, so the plan resolves
    stylegan3 = {"stylegan3_preflight": 12, "stylegan3_train": 24, "stylegan3_merge": 12}
    # a classifier job per seed (5) and dataset, gathered by the dataset's classifier job; a reader-study pack per
    # dataset, as each has SeLoRA and StyleGAN3 methods
    assert jobs == {**per_set, **per_dataset, **once, **stylegan3, "generate": 2 * (8 * 3 + 1), "finetune": 2 * 8 * 3,
                    "fid_reference": 4, "classifier_seed": 10, "reader_study_pack": 2}
