"""Adapter layers, target selection, the orthogonal regulariser and the training loss."""

from __future__ import annotations

import copy

import pytest
import torch
from adalora_helpers import batches, randomize_adapters, tiny_bert
from torch import nn

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig, LoraLinear, SVDLinear, orth_regularizer
from adalora.layers import _AdapterLayer

X = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(5))


# ---------------------------------------------------------------- layers by hand
def test_svd_linear_forward_by_hand():
    torch.manual_seed(0)
    base = nn.Linear(5, 3)
    layer = SVDLinear(copy.deepcopy(base), r=4, lora_alpha=8)
    assert (
        layer.lora_A.shape == (4, 5)
        and layer.lora_B.shape == (3, 4)
        and layer.lora_E.shape == (4, 1)
    )
    assert torch.all(layer.lora_E == 0)
    assert 0.005 < layer.lora_A.std() < 0.05 and 0.005 < layer.lora_B.std() < 0.05  # N(0, 0.02)
    assert not layer.base_layer.weight.requires_grad and layer.lora_A.requires_grad
    x = torch.randn(2, 5)
    assert torch.equal(layer(x), base(x))  # lambda = 0: unchanged
    with torch.no_grad():
        layer.lora_E.copy_(torch.tensor([[1.0], [-2.0], [0.0], [0.5]]))
    P, Q, lam = layer.lora_B, layer.lora_A, layer.lora_E.view(-1)
    expected = base(x) + x @ (P @ torch.diag(lam) @ Q).T * 8 / (4 + 1e-5)
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(layer.delta_weight(), P @ torch.diag(lam) @ Q * 8 / (4 + 1e-5))
    # lora_alpha <= 0 means alpha = r
    assert SVDLinear(nn.Linear(5, 3), r=4, lora_alpha=0).scale == pytest.approx(4 / (4 + 1e-5))


def test_svd_resize_keeps_scale_and_outputs():
    torch.manual_seed(0)
    layer = SVDLinear(nn.Linear(5, 3), r=4, lora_alpha=8)
    with torch.no_grad():
        layer.lora_E.copy_(torch.tensor([[1.0], [0.0], [-1.0], [0.0]]))  # triplets 1, 3 masked
    x = torch.randn(2, 5)
    before = layer(x)
    scale = layer.scale
    layer.resize(torch.tensor([True, False, True, False]))
    assert layer.r == 2 and layer.lora_A.shape == (2, 5) and layer.lora_B.shape == (3, 2)
    assert layer.scale == scale  # alpha / r_init, not alpha / 2
    torch.testing.assert_close(layer(x), before)
    layer.resize(torch.tensor([False, False]))  # rank 0
    assert layer.r == 0
    torch.testing.assert_close(layer(x), layer.base_layer(x))
    with pytest.raises(ValueError, match="rank mask has 3 entries, layer rank is 0"):
        layer.resize(torch.tensor([True, True, True]))


def test_lora_linear_by_hand():
    torch.manual_seed(0)
    base = nn.Linear(5, 3)
    layer = LoraLinear(copy.deepcopy(base), r=2, lora_alpha=6)
    x = torch.randn(4, 5)
    assert torch.all(layer.lora_B == 0) and layer.lora_A.abs().sum() > 0
    assert torch.equal(layer(x), base(x))
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = base(x) + x @ layer.lora_A.T @ layer.lora_B.T * 3.0
    torch.testing.assert_close(layer(x), expected)


def test_dropout_only_on_the_adapter_branch():
    torch.manual_seed(0)
    layer = SVDLinear(nn.Linear(6, 6), r=3, lora_alpha=3, dropout=0.5)
    with torch.no_grad():
        layer.lora_E.fill_(1.0)
    x = torch.randn(8, 6)
    layer.eval()
    clean = layer.base_layer(x) + x @ layer.delta_weight().T
    torch.testing.assert_close(layer(x), clean)
    layer.train()
    assert not torch.allclose(layer(x), clean)


# ---------------------------------------------------------------- identity at init
def test_adalora_identity_at_init(device):
    base = tiny_bert().eval().to(device)
    x = X.to(device)
    ref = base(input_ids=x).logits
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=4, target_r=2)).eval()
    assert len(m.adapter_layers()) == 12
    assert all(p.device == ref.device for p in m.parameters())  # adapters made on the device
    assert torch.equal(m(input_ids=x).logits, ref)
    # trainable: adapters and the classifier head, nothing else
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert all("lora_" in n or n.startswith("model.classifier.") for n in names)
    assert "model.classifier.weight" in names
    # 12 modules x r 4 x (in + out + 1) + classifier (32*2 + 2)
    sizes = [(32, 32)] * 4 + [(32, 64), (64, 32)]
    assert m.trainable_parameters() == 2 * sum(4 * (i + o + 1) for i, o in sizes) + 66
    randomize_adapters(m)
    assert not torch.allclose(m(input_ids=x).logits, ref)


def test_lora_baseline_identity_at_init(device):
    base = tiny_bert().eval().to(device)
    x = X.to(device)
    ref = base(input_ids=x).logits
    m = AdaLoraModel(copy.deepcopy(base), LoraConfig(r=3, lora_alpha=6)).eval()
    assert all(isinstance(l, LoraLinear) for l in m.adapter_layers().values())
    assert torch.equal(m(input_ids=x).logits, ref)
    assert m.rankallocator is None
    assert m.final_ranks() == {n: 3 for n in m.adapter_layers()}


def test_prune_lora_ablation():
    base = tiny_bert().eval()
    m = AdaLoraModel(
        copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1, prune_lora=True)
    ).eval()
    layer = next(iter(m.adapter_layers().values()))
    assert torch.all(layer.lora_E == 1) and not layer.lora_E.requires_grad
    assert torch.all(layer.lora_B == 0)
    assert torch.equal(m(input_ids=X).logits, base(input_ids=X).logits)


# ---------------------------------------------------------------- GPT-2 Conv1D
def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=50,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=16,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def test_conv1d_gpt2_identity_delta_and_merge():
    from transformers.pytorch_utils import Conv1D

    base = _tiny_gpt2()
    x = torch.randint(0, 50, (2, 6))
    ref = base(input_ids=x).logits
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1)).eval()
    layers = m.adapter_layers()
    assert sorted({n.split(".")[-1] for n in layers}) == ["c_attn", "c_fc", "c_proj"]
    assert len(layers) == 2 * 4  # attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj per block
    assert "lm_head" not in " ".join(layers)
    att = layers["transformer.h.0.attn.c_attn"]
    assert isinstance(att.base_layer, Conv1D) and att.fan_in_fan_out
    assert (att.in_features, att.out_features) == (16, 48)
    assert att.lora_A.shape == (3, 16) and att.lora_B.shape == (48, 3)
    assert torch.equal(m(input_ids=x).logits, ref)
    randomize_adapters(m)
    # Conv1D computes x @ W + b with W (in x out): the adapted weight is W + dW^T
    h = torch.randn(2, 16)
    dW = att.lora_B @ (att.lora_A * att.lora_E) * att.scale  # (out x in)
    torch.testing.assert_close(att(h), h @ (att.base_layer.weight + dW.T) + att.base_layer.bias)
    unmerged = m(input_ids=x).logits
    assert not torch.allclose(unmerged, ref)
    w0 = att.base_layer.weight.clone()
    m.merge_adapter()
    torch.testing.assert_close(m(input_ids=x).logits, unmerged, rtol=1e-5, atol=1e-5)
    m.unmerge_adapter()
    torch.testing.assert_close(att.base_layer.weight, w0, rtol=0, atol=1e-6)
    plain = m.merge_and_unload()
    assert not any(isinstance(mod, _AdapterLayer) for mod in plain.modules())
    torch.testing.assert_close(plain(input_ids=x).logits, unmerged, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- targets
def _leaf_types(names, layer_marker):
    """Module names relative to their layer (e.g. 'attention.self.query')."""
    out = set()
    for n in names:
        _, _, tail = n.partition(layer_marker)
        out.add(tail.split(".", 1)[1])
    return out


def test_default_targets_bert():
    m = AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1))
    names = list(m.adapter_layers())
    assert len(names) == 12
    assert _leaf_types(names, ".layer.") == {
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    assert not any(n.startswith(("classifier", "bert.pooler")) for n in names)
    assert m.config_.modules_to_save == ["classifier"]


def test_default_targets_roberta():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    model = RobertaForSequenceClassification(
        RobertaConfig(
            vocab_size=100,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=40,
        )
    )
    m = AdaLoraModel(model, AdaLoraConfig(init_r=2, target_r=1))
    names = list(m.adapter_layers())
    assert len(names) == 12 and len(_leaf_types(names, ".layer.")) == 6
    assert not any("classifier" in n for n in names)  # classifier.dense / out_proj stay plain
    assert isinstance(m.model.classifier.out_proj, nn.Linear)
    assert m.model.classifier.dense.weight.requires_grad  # trained in full (modules_to_save)


def test_default_targets_deberta_v2():
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    model = DebertaV2ForSequenceClassification(
        DebertaV2Config(
            vocab_size=100,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=40,
            pooler_hidden_size=16,
        )
    )
    m = AdaLoraModel(model, AdaLoraConfig(init_r=2, target_r=1))
    names = list(m.adapter_layers())
    assert len(names) == 12
    assert _leaf_types(names, ".layer.") == {
        "attention.self.query_proj",
        "attention.self.key_proj",
        "attention.self.value_proj",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    }
    assert not any(n.startswith(("classifier", "pooler")) for n in names)


def test_default_targets_bart():
    from transformers import BartConfig, BartForSequenceClassification

    model = BartForSequenceClassification(
        BartConfig(
            vocab_size=100,
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=40,
        )
    )
    m = AdaLoraModel(model, AdaLoraConfig(init_r=2, target_r=1))
    names = list(m.adapter_layers())
    enc = [n for n in names if ".encoder." in n]
    dec = [n for n in names if ".decoder." in n]
    # encoder layer: self-attn q/k/v/out + fc1 + fc2; decoder adds cross-attention q/k/v/out
    assert len(enc) == 6 and len(dec) == 10 and len(names) == 16
    assert {n.split(".")[-1] for n in names} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
    }
    assert not any("classification_head" in n for n in names)
    assert isinstance(m.model.classification_head.out_proj, nn.Linear)
    assert m.config_.modules_to_save == ["classification_head"]


def test_default_targets_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    model = T5ForConditionalGeneration(
        T5Config(
            vocab_size=100,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
        )
    )
    m = AdaLoraModel(model, AdaLoraConfig(init_r=2, target_r=1))
    names = list(m.adapter_layers())
    enc = [n for n in names if n.startswith("encoder.")]
    dec = [n for n in names if n.startswith("decoder.")]
    assert len(enc) == 6 and len(dec) == 10
    assert {n.split(".")[-1] for n in names} == {"q", "k", "v", "o", "wi", "wo"}
    assert "lm_head" not in names


def test_regex_targets():
    m = AdaLoraModel(
        tiny_bert(),
        AdaLoraConfig(
            init_r=2, target_r=1, target_modules=r"bert\.encoder\.layer\.0\..*\.(query|value)"
        ),
    )
    assert list(m.adapter_layers()) == [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.0.attention.self.value",
    ]


def test_list_targets_are_suffixes():
    m = AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1, target_modules=["value"]))
    assert list(m.adapter_layers()) == [
        f"bert.encoder.layer.{i}.attention.self.value" for i in (0, 1)
    ]


def test_unknown_targets_list_linear_names():
    with pytest.raises(ValueError) as e:
        AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1, target_modules=["q_proj"]))
    msg = str(e.value)
    assert "matched no Linear layer" in msg and "q_proj" in msg
    assert "bert.encoder.layer.0.attention.self.query" in msg and "classifier" in msg
    with pytest.raises(ValueError, match="matched no Linear layer"):
        AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1, target_modules=r"nothing.*"))


def test_unknown_architecture_needs_targets():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)

    with pytest.raises(
        ValueError, match=r"no default target_modules.*Linear layers of this model: proj"
    ):
        AdaLoraModel(Net(), AdaLoraConfig(init_r=2, target_r=1))
    m = AdaLoraModel(Net(), AdaLoraConfig(init_r=2, target_r=1, target_modules=["proj"]))
    assert list(m.adapter_layers()) == ["proj"]


# ---------------------------------------------------------------- orthogonal regulariser
def _by_hand(layers, form):
    total, count = 0.0, 0
    for layer in layers:
        Q, P = layer.lora_A.detach().double().cpu(), layer.lora_B.detach().double().cpu()
        for gram in (Q @ Q.T, P.T @ P):
            r = gram.shape[0]
            sq = 0.0
            for i in range(r):
                for j in range(r):
                    sq += (gram[i, j].item() - (1.0 if i == j else 0.0)) ** 2
            total += sq if form == "squared_sum" else sq**0.5
            count += 1
    return total if form == "squared_sum" else total / count


@pytest.mark.parametrize("form", ["norm_mean", "squared_sum"])
def test_orth_reg_by_hand(form, device):
    m = AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m, std=0.4)
    layers = list(m.to(device).adapter_layers().values())
    R = orth_regularizer(layers, form)
    assert float(R.detach()) == pytest.approx(_by_hand(layers, form), rel=1e-5)
    # rank-0 modules add nothing but still count in the mean (PEFT: every P and Q is counted)
    layers[0].resize(torch.zeros(3, dtype=torch.bool))
    R0 = float(orth_regularizer(layers, form).detach())
    assert R0 == pytest.approx(_by_hand(layers, form), rel=1e-5)


def test_orth_reg_of_orthonormal_factors_is_zero():
    layer = SVDLinear(nn.Linear(4, 4), r=2, lora_alpha=2)
    with torch.no_grad():
        layer.lora_A.copy_(torch.eye(4)[:2])
        layer.lora_B.copy_(torch.eye(4)[:, 2:])
    assert float(orth_regularizer([layer]).detach()) == 0.0


@pytest.mark.parametrize("variant,form", [("peft", "norm_mean"), ("paper", "squared_sum")])
def test_loss_includes_orth_reg_in_train_mode_only(variant, form, device):
    base = tiny_bert()
    ((x, y),) = batches(1)
    x, y = x.to(device), y.to(device)
    m = AdaLoraModel(
        copy.deepcopy(base),
        AdaLoraConfig(init_r=3, target_r=1, orth_reg_weight=0.3, variant=variant),
    )
    randomize_adapters(m)
    m.to(device)
    plain = m.model(input_ids=x, labels=y).loss  # the wrapped model alone
    R = _by_hand(list(m.adapter_layers().values()), form)
    m.train()
    loss = m(input_ids=x, labels=y).loss
    assert float(loss.detach()) == pytest.approx(float(plain.detach()) + 0.3 * R, rel=1e-5)
    assert float(m.last_orth_reg) == pytest.approx(R, rel=1e-5)
    loss.backward()  # R is differentiable: P and Q receive its gradient
    m.eval()
    assert float(m(input_ids=x, labels=y).loss.detach()) == pytest.approx(
        float(plain.detach()), rel=1e-6
    )
    # no labels -> no loss -> nothing added, logits untouched
    assert m.train()(input_ids=x).loss is None


def test_no_orth_reg_for_zero_weight_and_lora():
    base = tiny_bert()
    ((x, y),) = batches(1)
    for cfg in (AdaLoraConfig(init_r=3, target_r=1, orth_reg_weight=0.0), LoraConfig(r=3)):
        m = AdaLoraModel(copy.deepcopy(base), cfg).train()
        randomize_adapters(m)
        with torch.no_grad():
            assert float(m(input_ids=x, labels=y).loss) == float(
                m.model(input_ids=x, labels=y).loss
            )
