"""AdaLoRA: the orthogonality penalty we add by hand is the one peft adds to a model output's `.loss`; the final
budget is allocated even when the gradient scaler skips the step peft allocates it at."""

from types import SimpleNamespace

import pytest
import torch
from peft import AdaLoraConfig
from peft.tuners.adalora import AdaLoraModel
from torch import nn
from tiny_models import diffusion_loss, regression_models, tiny_text_encoder, tiny_unet

from migros.adapters.adalora import AdaLoraAdapter, AdaLoraSettings, adalora_orthogonality_penalty

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


@pytest.mark.parametrize("skipped_step", [None, 8], ids=["no_step_skipped", "final_step_skipped"])
def test_the_final_budget_is_allocated_on_the_first_step_taken_at_or_after_its_step(skipped_step):
    """peft allocates the final budget only at its 0-based step total_step − tfinal (7 here: our step 8) and then
    only re-applies the last pattern; a step the fp16 gradient scaler skips there must not lose the allocation."""
    pipeline = SimpleNamespace(unet=tiny_unet(), text_encoder=tiny_text_encoder())  # the two submodels it adapts
    # budget falls from 4 to 2 ranks per layer; the only re-allocation before the final one (step 4, every deltaT
    # = 4 after tinit) leaves more than the final budget, so the final allocation is visible in the ranks
    settings = AdaLoraSettings(init_r=4, target_r=2, tinit=1, tfinal=2, deltaT=4, alpha=4, orth_reg_weight=0.1)
    adapter = AdaLoraAdapter(pipeline, settings, seed=0, total_steps=9)
    models = {"unet": pipeline.unet, "text_encoder": pipeline.text_encoder}
    optimizer = torch.optim.Adam(adapter.trainable_parameters(), lr=1e-2)
    final_budget = 2 * len(adapter.layers)
    rank_totals = {}
    for step in range(1, 10):
        optimizer.zero_grad()
        (diffusion_loss(models, step) + adapter.regularisation()).backward()
        stepped = step != skipped_step
        if stepped:
            optimizer.step()
        adapter.after_optimizer_step(step, None, optimizer, stepped)
        rank_totals[step] = sum(adapter.ranks().values())
    allocated_at = 8 if skipped_step is None else 9
    assert rank_totals[allocated_at - 1] > final_budget
    assert rank_totals[allocated_at] == rank_totals[9] == final_budget
    assert max(step for step, _, _ in adapter.rank_history()) == allocated_at
