"""The paper's published numbers (Tables 1-3), keyed by the method names of config/paper.yaml.

They are comparable with ours only when the run used the real datasets, SD v1.5 and 224-px images
(`comparable_with_paper`); the report prints them beside every run and says whether they are comparable.
"""

from migros.diffusion.model_ids import SAME_WEIGHTS, SD15_ID

SD15_SOURCES = {SD15_ID, *SAME_WEIGHTS[SD15_ID]}

# Table 1: FID of 1000 generated images.
FID = {
    ("brats", "lora_r4"): 195.7,
    ("brats", "lora_r8"): 211.98,
    ("brats", "selora_l1.00"): 126.38,
    ("brats", "selora_l1.04"): 125.29,
    ("brats", "selora_l1.08"): 117.06,
    ("picai", "lora_r4"): 299.61,
    ("picai", "lora_r8"): 258.83,
    ("picai", "selora_e150"): 158.13,
    ("picai", "selora_e175"): 171.67,
    ("picai", "selora_e200"): 165.80,
}

# Tables 2 and 3: ResNet-18 over 5 seeds, (mean, std); condition "real" = no data augmentation.
CLASSIFIER = {
    ("brats", "real"): {"auc": (0.93, 0.02), "accuracy": (0.84, 0.02)},
    ("brats", "real+selora_l1.00"): {"auc": (0.93, 0.02), "accuracy": (0.89, 0.02)},
    ("brats", "real+selora_l1.04"): {"auc": (0.95, 0.02), "accuracy": (0.84, 0.03)},
    ("brats", "real+selora_l1.08"): {"auc": (0.90, 0.02), "accuracy": (0.82, 0.04)},
    ("picai", "real"): {"auc": (0.85, 0.02), "accuracy": (0.72, 0.03)},
    ("picai", "real+selora_e150"): {"auc": (0.87, 0.02), "accuracy": (0.77, 0.04)},
    ("picai", "real+selora_e175"): {"auc": (0.87, 0.03), "accuracy": (0.73, 0.03)},
    ("picai", "real+selora_e200"): {"auc": (0.87, 0.02), "accuracy": (0.75, 0.04)},
}


def comparable_with_paper(config: dict, dataset: str) -> bool:
    """True when the dataset is real (not the phantoms), the base model SD v1.5 and the images 224 px."""
    settings = config["datasets"][dataset]
    return settings["root"] != "demo" and config["base_model"]["source"] in SD15_SOURCES and settings["image_size"] == 224
