"""LoraConfig's per-module ranks and alphas (PEFT's rank_pattern / alpha_pattern)."""

import pytest
import torch

from adalora import AdaLoraModel, LoraConfig
from tests.adalora_helpers import tiny_bert


def _pattern_model(seed=0):
    torch.manual_seed(seed)
    base = tiny_bert()
    cfg = LoraConfig(
        r=2,
        lora_alpha=4,
        target_modules=["query", "value"],
        rank_pattern={"layer.0.attention.self.query": 3, "value": 1},
        alpha_pattern={"layer.0.attention.self.query": 6},
    )
    return AdaLoraModel(base, cfg)


def test_ranks_and_scales_follow_the_patterns():
    model = _pattern_model()
    layers = model.adapter_layers()
    q0 = next(v for k, v in layers.items() if k.endswith("layer.0.attention.self.query"))
    q1 = next(v for k, v in layers.items() if k.endswith("layer.1.attention.self.query"))
    v0 = next(v for k, v in layers.items() if k.endswith("layer.0.attention.self.value"))
    assert q0.lora_A.shape[0] == 3 and q0.scale == pytest.approx(6 / 3)
    assert q1.lora_A.shape[0] == 2 and q1.scale == pytest.approx(4 / 2)  # no key matches
    assert v0.lora_A.shape[0] == 1 and v0.scale == pytest.approx(4 / 1)
    assert (
        model.final_ranks()[next(k for k in layers if k.endswith("layer.0.attention.self.query"))]
        == 3
    )


@pytest.mark.parametrize("bad", [{"query": 0}, {"query": 1.5}, {"query": -2}])
def test_bad_rank_pattern_is_rejected(bad):
    with pytest.raises(ValueError, match="rank_pattern"):
        LoraConfig(r=2, rank_pattern=bad)


def test_patterns_round_trip_through_peft(tmp_path):
    peft = pytest.importorskip("peft")
    model = _pattern_model()
    for layer in model.adapter_layers().values():  # B = 0 at init: give it a visible update
        torch.nn.init.normal_(layer.lora_B, std=0.1)
    model.eval()
    x = torch.randint(0, 100, (2, 7))
    ours = model(input_ids=x).logits
    model.save_pretrained(tmp_path)
    torch.manual_seed(0)
    theirs = peft.PeftModel.from_pretrained(tiny_bert(), tmp_path).eval()
    torch.testing.assert_close(theirs(input_ids=x).logits, ours)
    back = AdaLoraModel.from_pretrained(_fresh_base(), tmp_path).eval()
    torch.testing.assert_close(back(input_ids=x).logits, ours)


def _fresh_base():
    torch.manual_seed(0)
    return tiny_bert()
