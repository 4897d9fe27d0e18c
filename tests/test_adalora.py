"""AdaLoRA: the orthogonality penalty we add by hand is the one peft adds to a model output's `.loss`."""

from types import SimpleNamespace

import pytest
import torch
from peft import AdaLoraConfig
from peft.tuners.adalora import AdaLoraModel
from torch import nn
from tiny_models import regression_models

from migros.adapters.adalora import adalora_orthogonality_penalty

pytestmark = pytest.mark.usefixtures("single_thread")


class LossOnly(nn.Module):
    """An MLP whose output carries a `.loss` of zero, so peft's forward adds exactly its penalty to it."""

    def __init__(self):
        super().__init__()
        self.mlp = regression_models()["mlp"]

    def forward(self, x):
        return SimpleNamespace(loss=self.mlp(x).sum() * 0)


@pytest.mark.parametrize("weight", [0.1, 0.5])
def test_orthogonality_penalty_equals_the_one_peft_adds_to_a_loss(weight):
    torch.manual_seed(0)
    config = AdaLoraConfig(init_r=4, target_r=2, tinit=1, tfinal=1, deltaT=1, total_step=10, lora_alpha=4,
                           orth_reg_weight=weight, target_modules=["mlp.0", "mlp.2"])
    tuner = AdaLoraModel(LossOnly(), config, "default")
    peft_loss = tuner(torch.randn(3, 16)).loss
    ours = adalora_orthogonality_penalty(tuner.model, weight, "default")
    assert ours.item() > 0.1  # random A and B are far from orthogonal
    torch.testing.assert_close(ours, peft_loss, rtol=1e-6, atol=0)
    ours.backward()  # differentiable: it trains A and B towards orthogonality
    assert all(layer.lora_A["default"].grad is not None for layer in (tuner.model.mlp[0], tuner.model.mlp[2]))
