"""Config validation and usage errors: each one raises with a message that says what to do."""

from __future__ import annotations

import warnings

import pytest
import torch
from adalora_helpers import batches, tiny_bert, trainable

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig
from adalora.config import config_from_dict


# ---------------------------------------------------------------- AdaLoraConfig fields
def test_defaults_follow_peft():
    c = AdaLoraConfig()
    assert (c.init_r, c.target_r, c.tinit, c.tfinal, c.deltaT) == (12, 8, 0, 0, 1)
    assert (c.beta1, c.beta2, c.orth_reg_weight, c.lora_alpha) == (0.85, 0.85, 0.5, 8)
    assert c.total_step is None
    assert (c.variant, c.orth_reg_form, c.score_weights, c.final_phase) == (
        "peft",
        "norm_mean",
        "post_step",
        "fixed",
    )


def test_variant_defaults_and_overrides():
    p = AdaLoraConfig(variant="paper")
    assert (p.orth_reg_form, p.score_weights, p.final_phase) == ("squared_sum", "pre_step", "fixed")
    a = AdaLoraConfig(variant="authors")
    assert (a.orth_reg_form, a.score_weights, a.final_phase) == (
        "norm_mean",
        "post_step",
        "frozen_scores",
    )
    o = AdaLoraConfig(variant="paper", orth_reg_form="norm_mean")  # explicit field wins
    assert (o.orth_reg_form, o.score_weights) == ("norm_mean", "pre_step")


@pytest.mark.parametrize("tinit,tfinal,total", [(5, 5, 10), (10, 0, 10), (0, 10, 10), (8, 5, 10)])
def test_no_budgeting_phase(tinit, tfinal, total):
    with pytest.raises(ValueError, match=r"tinit \(\d+\) \+ tfinal \(\d+\) >= total_step"):
        AdaLoraConfig(init_r=4, target_r=2, tinit=tinit, tfinal=tfinal, total_step=total)


def test_one_budgeting_step_is_enough():
    AdaLoraConfig(init_r=4, target_r=2, tinit=5, tfinal=4, total_step=10)  # t = 6 budgets


def test_check_schedule_later():
    c = AdaLoraConfig(tinit=5, tfinal=5)  # total_step unknown yet: fine
    with pytest.raises(ValueError, match="No budgeting phase"):
        c.check_schedule(10)
    with pytest.raises(ValueError, match="total_step must be a positive integer"):
        c.check_schedule(0)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(init_r=4, target_r=6), r"target_r \(6\) > init_r \(4\)"),
        (dict(init_r=0), "init_r must be a positive integer"),
        (dict(init_r=2.5, target_r=1), "init_r must be a positive integer"),
        (dict(target_r=-1), "target_r must be >= 0"),
        (dict(beta1=1.0), r"beta1 must be in \(0, 1\)"),
        (dict(beta1=0.0), r"beta1 must be in \(0, 1\)"),
        (dict(beta2=1.5), r"beta2 must be in \(0, 1\)"),
        (dict(beta2=-0.1), r"beta2 must be in \(0, 1\)"),
        (dict(orth_reg_weight=-0.1), "orth_reg_weight must be >= 0"),
        (dict(lora_dropout=-0.1), r"lora_dropout must be in \[0, 1\)"),
        (dict(lora_dropout=1.0), r"lora_dropout must be in \[0, 1\)"),
        (dict(deltaT=0), "deltaT must be an integer >= 1"),
        (dict(tinit=-1), "tinit must be an integer >= 0"),
        (dict(target_total_rank=-3), "target_total_rank must be >= 0"),
        (dict(variant="nope"), "variant must be one of"),
        (dict(score="fisher"), "score must be one of"),
        (dict(schedule="exp"), "schedule must be one of"),
        (dict(final_phase="x"), "final_phase must be one of"),
        (dict(target_modules=[]), "target_modules must be a regex string or a non-empty list"),
        (dict(target_modules="query("), "is not a valid regex"),
    ],
)
def test_bad_adalora_configs(kw, msg):
    with pytest.raises(ValueError, match=msg):
        AdaLoraConfig(**kw)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(r=0), "LoRA rank r must be a positive integer"),
        (dict(lora_dropout=-0.5), "lora_dropout must be in"),
    ],
)
def test_bad_lora_configs(kw, msg):
    with pytest.raises(ValueError, match=msg):
        LoraConfig(**kw)


def test_scaling():
    assert AdaLoraConfig(init_r=4, target_r=2, lora_alpha=8).scaling == 2.0
    assert AdaLoraConfig(init_r=4, target_r=2, lora_alpha=0).scaling == 1.0  # alpha -> r
    assert LoraConfig(r=4, lora_alpha=16).scaling == 4.0


def test_config_dict_round_trip():
    c = AdaLoraConfig(
        init_r=6,
        target_r=2,
        tinit=3,
        tfinal=4,
        total_step=20,
        variant="authors",
        target_modules=["query"],
        score="sensitivity",
        schedule="linear",
    )
    d = c.to_dict()
    assert d["peft_type"] == "ADALORA"
    assert config_from_dict(d) == c
    lc = LoraConfig(r=3, lora_alpha=6, target_modules=["value"])
    assert config_from_dict(lc.to_dict()) == lc
    # a PEFT adapter_config.json carries keys we do not know: dropped
    assert config_from_dict(d | {"use_dora": False, "megatron_core": "x"}) == c
    with pytest.raises(ValueError, match="unsupported peft_type 'IA3'"):
        config_from_dict({"peft_type": "IA3"})


def test_peft_keywords_accepted():
    """PEFT's constructor keywords of the seed example: peft_type and task_type included."""
    c = AdaLoraConfig(
        peft_type="ADALORA",
        task_type="SEQ_2_SEQ_LM",
        init_r=12,
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.01,
        total_step=1000,
    )
    assert c.peft_type == "ADALORA" and c.to_dict()["peft_type"] == "ADALORA"
    assert c.task_type == "SEQ_2_SEQ_LM"
    assert config_from_dict(c.to_dict()) == c
    assert LoraConfig(peft_type="LORA", r=2).peft_type == "LORA"
    assert AdaLoraConfig(peft_type="adalora").peft_type == "ADALORA"
    with pytest.raises(ValueError, match="AdaLoraConfig has peft_type 'ADALORA', got 'LORA'"):
        AdaLoraConfig(peft_type="LORA")
    with pytest.raises(ValueError, match="use AdaLoraConfig"):
        LoraConfig(peft_type="ADALORA")
    # PEFT keywords this library does not implement are refused (as the docstring lists)
    for kw in ("r", "bias", "inference_mode", "exclude_modules", "layers_to_transform"):
        assert kw in AdaLoraConfig.__doc__
        with pytest.raises(TypeError, match=kw):
            AdaLoraConfig(**{kw: None})


def test_all_linear_is_a_valid_spec():
    assert AdaLoraConfig(target_modules="all-linear").target_modules == "all-linear"
    m = AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1, target_modules="all-linear"))
    # every Linear but the classifier (a task head, trained in full): 12 + the pooler
    assert len(m.adapter_layers()) == 13 and "bert.pooler.dense" in m.adapter_layers()


# ---------------------------------------------------------------- usage errors
def _model(**kw):
    cfg = dict(init_r=4, target_r=2, tinit=1, tfinal=1, total_step=10)
    cfg.update(kw)
    return AdaLoraModel(tiny_bert(), AdaLoraConfig(**cfg))


def _step(m, opt, seed=1):
    ((x, y),) = batches(1, seed)
    m(input_ids=x, labels=y).loss.backward()
    opt.step()


def test_update_and_allocate_without_total_step():
    m = _model(total_step=None)
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    _step(m, opt)
    with pytest.raises(ValueError, match=r"total_step is not set.*AdaLoraCallback"):
        m.update_and_allocate(1)


def test_update_and_allocate_twice_for_one_step():
    m = _model()
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    _step(m, opt)
    m.update_and_allocate(1)
    with pytest.raises(
        ValueError, match=r"update_and_allocate\(1\) after step 1.*once per optimizer step"
    ):
        m.update_and_allocate(1)
    with pytest.raises(ValueError, match="once per optimizer step"):
        m.update_and_allocate(0)  # going backwards
    m.update_and_allocate(2)  # the next step is fine


def test_update_and_allocate_after_zero_grad():
    m = _model()
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    _step(m, opt)
    opt.zero_grad()  # set_to_none: the gradients are gone
    with pytest.raises(RuntimeError, match=r"no gradient.*before optimizer.zero_grad\(\)"):
        m.update_and_allocate(1)
    # the failed call did not consume the step
    _step(m, opt)
    m.update_and_allocate(1)


def test_lora_model_cannot_allocate():
    m = AdaLoraModel(tiny_bert(), LoraConfig(r=2))
    with pytest.raises(TypeError, match="needs an AdaLoraConfig"):
        m.update_and_allocate(1)


def test_paper_variant_needs_update_importance_before_step():
    m = _model(variant="paper")
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    _step(m, opt)
    with pytest.raises(RuntimeError, match=r"update_importance\(\) before optimizer.step\(\)"):
        m.update_and_allocate(1)


def test_warning_when_training_ended_without_allocation(tmp_path):
    m = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.save_pretrained(tmp_path / "untrained")  # never trained: no warning
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    _step(m, opt)
    with pytest.warns(UserWarning, match="without a single update_and_allocate"):
        m.check_allocation_ran()
    with pytest.warns(UserWarning, match="without a single update_and_allocate"):
        m.save_pretrained(tmp_path / "trained")  # saving is where a manual loop has ended
    m.update_and_allocate(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.check_allocation_ran()  # silent once allocation ran
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AdaLoraModel(tiny_bert(), LoraConfig(r=2)).check_allocation_ran()  # LoRA: nothing to run


def test_target_r_budget_over_init_budget():
    with pytest.raises(ValueError, match="final budget 100 exceeds the initial budget 48"):
        _model(target_total_rank=100)


def test_bad_modules_to_save():
    with pytest.raises(
        ValueError, match=r"modules_to_save entry 'head' is not a submodule.*classifier"
    ):
        AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=2, target_r=1, modules_to_save=["head"]))
