"""Target selection against PEFT 0.21 itself, module by module: for the same ``target_modules``
(suffix list, regex, "all-linear"), ``modules_to_save`` and ``task_type``, we adapt exactly the
modules PEFT's AdaLoRA adapts, on BERT, RoBERTa, DeBERTa-v2, BART, T5 and GPT-2 built from tiny
configs. And a PEFT adapter trained with ["query", "key", "value", "dense"] on BERT (which
adapts bert.pooler.dense) loads here to the same logits."""

from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from adalora_helpers import batches, tiny_bert  # noqa: E402
from torch import nn  # noqa: E402

from adalora import AdaLoraConfig, AdaLoraModel  # noqa: E402
from adalora.targets import TASK_HEADS, find_targets, head_modules  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]

ENC = dict(
    vocab_size=100,
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=32,
    max_position_embeddings=40,
)
BART = dict(
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
T5 = dict(
    vocab_size=100, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2
)
GPT2 = dict(vocab_size=100, n_embd=16, n_layer=1, n_head=2, n_positions=40, pad_token_id=0)


def build(arch: str) -> nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    return {
        "bert": lambda: tf.BertForSequenceClassification(tf.BertConfig(**ENC)),
        "roberta": lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(**ENC)),
        "deberta-v2": lambda: tf.DebertaV2ForSequenceClassification(
            tf.DebertaV2Config(**ENC, pooler_hidden_size=16)
        ),
        "bart": lambda: tf.BartForConditionalGeneration(tf.BartConfig(**BART)),
        "bart-cls": lambda: tf.BartForSequenceClassification(tf.BartConfig(**BART)),
        "t5": lambda: tf.T5ForConditionalGeneration(tf.T5Config(**T5)),
        "gpt2": lambda: tf.GPT2LMHeadModel(tf.GPT2Config(**GPT2)),
        "gpt2-cls": lambda: tf.GPT2ForSequenceClassification(tf.GPT2Config(**GPT2)),
    }[arch]()


TASK = {
    "bert": "SEQ_CLS",
    "roberta": "SEQ_CLS",
    "deberta-v2": "SEQ_CLS",
    "bart": "SEQ_2_SEQ_LM",
    "bart-cls": "SEQ_CLS",
    "t5": "SEQ_2_SEQ_LM",
    "gpt2": "CAUSAL_LM",
    "gpt2-cls": "SEQ_CLS",
}
# (arch, target_modules): suffix lists (with the ambiguous "dense" / "out_proj" / "c_proj"),
# regexes (full match) and PEFT's "all-linear"
SPECS = [
    ("bert", ["query", "key", "value", "dense"]),
    ("bert", ["value", "bert.encoder.layer.0.attention.self.query"]),  # full names match too
    ("bert", r".*\.(query|dense)"),
    ("bert", "all-linear"),
    ("roberta", ["query", "key", "value", "dense"]),
    ("roberta", r"roberta\.encoder\..*\.(key|dense)"),
    ("roberta", "all-linear"),
    ("deberta-v2", ["query_proj", "key_proj", "value_proj", "dense"]),
    ("deberta-v2", r".*(value_proj|dense)"),
    ("deberta-v2", "ALL-LINEAR"),  # PEFT compares case-insensitively
    ("bart", ["q_proj", "v_proj", "out_proj", "fc1"]),
    ("bart", r"model\.decoder\..*_proj"),
    ("bart", "all-linear"),
    ("bart-cls", ["q_proj", "out_proj", "dense"]),
    ("bart-cls", "all-linear"),
    ("t5", ["q", "v", "wo"]),
    ("t5", r".*decoder.*\.(q|k|wi)"),
    ("t5", "all-linear"),
    ("gpt2", ["c_attn", "c_proj"]),
    ("gpt2", r".*\.h\.0\.mlp\.c_.*"),
    ("gpt2", "all-linear"),
    ("gpt2-cls", ["c_attn", "c_fc"]),
    ("gpt2-cls", "all-linear"),
]
IDS = [f"{a}-{t if isinstance(t, str) else '+'.join(t)}" for a, t in SPECS]


@pytest.fixture(scope="module")
def models():
    return {arch: build(arch) for arch in TASK}


def peft_targets(model, target_modules, modules_to_save=None, task_type=None, wrap=False):
    """The module names PEFT's AdaLoRA adapts: the tuner directly, or get_peft_model
    (``wrap``; PeftModelForSequenceClassification adds its own modules_to_save)."""
    cfg = peft.AdaLoraConfig(
        init_r=2,
        target_r=1,
        total_step=10,
        target_modules=copy.deepcopy(target_modules),
        modules_to_save=copy.deepcopy(modules_to_save),
        task_type=task_type,
    )
    if wrap:
        return set(peft.get_peft_model(copy.deepcopy(model), cfg).base_model.targeted_module_names)
    tuner = peft.tuners.adalora.AdaLoraModel(copy.deepcopy(model), cfg, "default")
    return set(tuner.targeted_module_names)


def our_targets(model, target_modules, modules_to_save, task_type):
    """Ours, both ways: find_targets and the layers an AdaLoraModel actually wraps."""
    saved = head_modules(model) if modules_to_save is None else modules_to_save
    names = find_targets(model, target_modules, saved, task_type)
    cfg = AdaLoraConfig(
        init_r=2,
        target_r=1,
        target_modules=copy.deepcopy(target_modules),
        modules_to_save=copy.deepcopy(modules_to_save),
        task_type=task_type,
    )
    wrapped = list(AdaLoraModel(copy.deepcopy(model), cfg).adapter_layers())
    assert wrapped == names
    assert len(set(names)) == len(names)
    return set(names)


@pytest.mark.parametrize("with_task_type", [False, True], ids=["no-task", "task"])
@pytest.mark.parametrize("arch,target_modules", SPECS, ids=IDS)
def test_same_modules_as_peft(models, arch, target_modules, with_task_type):
    model = models[arch]
    task = TASK[arch] if with_task_type else None
    heads = head_modules(model)
    # no modules_to_save: PEFT's None is our [] (our None means "the task heads")
    theirs = peft_targets(model, target_modules, None, task)
    assert our_targets(model, target_modules, [], task) == theirs
    # the task heads in modules_to_save: never adapted, by either library
    theirs_saved = peft_targets(model, target_modules, heads, task)
    ours_saved = our_targets(model, target_modules, heads, task)
    assert ours_saved == theirs_saved
    assert not any(n.split(".")[0] in heads for n in ours_saved)
    # our default modules_to_save is the task heads
    assert our_targets(model, target_modules, None, task) == ours_saved


def test_bert_dense_adapts_the_pooler(models):
    """The case that used to differ: "dense" on BERT adapts bert.pooler.dense, as in PEFT."""
    names = find_targets(models["bert"], ["query", "key", "value", "dense"], ["classifier"])
    assert "bert.pooler.dense" in names and len(names) == 7
    assert "classifier" not in names


SEQ_CLS_LISTS = {
    "bert": ["query", "value", "dense"],
    "roberta": ["query", "key", "dense"],
    "deberta-v2": ["query_proj", "dense"],
    "gpt2-cls": ["c_attn", "c_proj"],
}


@pytest.mark.parametrize("arch", sorted(SEQ_CLS_LISTS))
@pytest.mark.parametrize("spec", ["list", "all-linear"])
def test_same_modules_as_get_peft_model_seq_cls(models, arch, spec):
    """get_peft_model with task_type SEQ_CLS adds ["classifier", "score"] to modules_to_save;
    our default (the model's task heads) excludes the same modules on these models."""
    model = models[arch]
    tm = "all-linear" if spec == "all-linear" else SEQ_CLS_LISTS[arch]
    theirs = peft_targets(model, tm, None, "SEQ_CLS", wrap=True)
    assert our_targets(model, tm, None, "SEQ_CLS") == theirs


def test_bart_classification_head_deviation(models):
    """Documented deviation: PEFT's SEQ_CLS wrapper saves only modules named classifier / score,
    so on BartForSequenceClassification it adapts classification_head.* and leaves the fresh
    head frozen; our default modules_to_save trains the head in full and never adapts it.
    Given the same modules_to_save, both select the same modules."""
    model = models["bart-cls"]
    tm = ["q_proj", "out_proj"]
    theirs = peft_targets(model, tm, None, "SEQ_CLS", wrap=True)
    ours = our_targets(model, tm, None, "SEQ_CLS")
    assert theirs - ours == {"classification_head.out_proj"} and ours <= theirs
    assert peft_targets(model, tm, ["classification_head"], "SEQ_CLS", wrap=True) == ours


@pytest.mark.parametrize(
    "arch,target_modules",
    [("bert", ["output"]), ("bert", r".*attention"), ("t5", ["layer"])],
)
def test_non_linear_match_raises_like_peft(models, arch, target_modules):
    """A spec that matches a non-Linear module (BertSelfOutput, a T5 block list) is an error in
    PEFT; here too, with the list of Linear layers to pick from."""
    with pytest.raises(ValueError, match="not supported"):
        peft_targets(models[arch], target_modules)
    with pytest.raises(ValueError, match=r"is not supported.*Linear layers of this model"):
        find_targets(models[arch], target_modules, [])


def test_everything_saved_is_an_error(models):
    with pytest.raises(ValueError, match="never adapted"):
        find_targets(models["bert"], ["classifier"], ["classifier"])


def test_modules_to_save_entries_match_as_components(models):
    """PEFT's guard: an entry excludes every module that has it as a dotted component."""
    tm = ["query", "value", "dense"]
    names = find_targets(models["bert"], tm, ["attention"])
    assert names == [
        "bert.encoder.layer.0.intermediate.dense",
        "bert.encoder.layer.0.output.dense",
        "bert.pooler.dense",
    ]
    assert set(names) == peft_targets(models["bert"], tm, ["attention"])


# PEFT's default target_modules (TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING) against
# ours (all six matrix types, never a task head): what PEFT adapts and we do not, per model,
# with the task heads in modules_to_save / without modules_to_save. README "Target modules".
DEFAULT_ONLY_IN_PEFT = {
    "bert": (set(), set()),
    "roberta": (set(), {"classifier.dense"}),
    "deberta-v2": ({"pooler.dense"}, {"pooler.dense"}),
    "bart": (set(), set()),
    "bart-cls": (set(), {"classification_head.out_proj"}),
    "t5": (set(), set()),
    "gpt2": (set(), set()),
}


@pytest.mark.parametrize("arch", sorted(DEFAULT_ONLY_IN_PEFT))
def test_default_targets_against_peft_mapping(models, arch):
    model = models[arch]
    heads = head_modules(model)
    with_heads, without = DEFAULT_ONLY_IN_PEFT[arch]
    ours = our_targets(model, None, heads, None)
    assert peft_targets(model, None, heads) - ours == with_heads
    assert peft_targets(model, None, None) - our_targets(model, None, [], None) == without
    assert not any(n.split(".")[0] in TASK_HEADS for n in ours)


# ------------------------------------------------------------------ a PEFT adapter loads here
X = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(5))
QKVD = ["query", "key", "value", "dense"]


def test_peft_adapter_with_dense_loads_here(tmp_path):
    base = tiny_bert()
    kw = dict(init_r=4, target_r=2, tinit=1, tfinal=2, deltaT=1, total_step=8, lora_alpha=8)
    pm = peft.get_peft_model(
        copy.deepcopy(base),
        peft.AdaLoraConfig(task_type="SEQ_CLS", target_modules=QKVD, **kw),
    )
    targeted = set(pm.base_model.targeted_module_names)
    assert "bert.pooler.dense" in targeted and len(targeted) == 13
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=2e-2)
    pm.train()
    for t, (x, y) in enumerate(batches(7, seed=4)):
        pm(input_ids=x, labels=y).loss.backward()
        opt.step()
        pm.base_model.update_and_allocate(t)
        opt.zero_grad()
    pm.eval()
    pattern = {
        k.replace(".default", ""): sum(v) for k, v in pm.peft_config["default"].rank_pattern.items()
    }
    pm.save_pretrained(tmp_path)
    with torch.no_grad():
        ref = pm(input_ids=X).logits
    om = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert set(om.adapter_layers()) == targeted
    assert {f"{n}.lora_E": layer.r for n, layer in om.adapter_layers().items()} == pattern
    with torch.no_grad():
        torch.testing.assert_close(om(input_ids=X).logits, ref, rtol=0, atol=1e-6)
    # and the same spec here builds the same modules and budget as PEFT's
    ours = AdaLoraModel(
        copy.deepcopy(base), AdaLoraConfig(task_type="SEQ_CLS", target_modules=QKVD, **kw)
    )
    assert set(ours.adapter_layers()) == targeted
    assert ours.rankallocator.b0 == 4 * 13 and ours.rankallocator.bT == 2 * 13
    assert ours.rankallocator.b0 == pm.base_model.rankallocator.budget_schedule(0)[0]


def test_our_dense_adapter_loads_in_peft(tmp_path):
    base = tiny_bert()
    cfg = AdaLoraConfig(
        task_type="SEQ_CLS",
        target_modules=QKVD,
        init_r=4,
        target_r=2,
        tinit=1,
        tfinal=2,
        total_step=8,
    )
    om = AdaLoraModel(copy.deepcopy(base), cfg)
    opt = torch.optim.AdamW([p for p in om.parameters() if p.requires_grad], lr=2e-2)
    om.train()
    for t, (x, y) in enumerate(batches(7, seed=4)):
        om(input_ids=x, labels=y).loss.backward()
        opt.step()
        om.update_and_allocate(t)
        opt.zero_grad()
    om.eval().save_pretrained(tmp_path)
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    assert set(pm.base_model.targeted_module_names) == set(om.adapter_layers())
    with torch.no_grad():
        torch.testing.assert_close(
            pm(input_ids=X).logits, om(input_ids=X).logits, rtol=0, atol=1e-6
        )


def test_peft_adapter_with_exclude_modules_loads_here(tmp_path):
    """PEFT matching options this library does not model (exclude_modules, layers_to_transform):
    the loader takes the adapted modules from the saved weights instead."""
    base = tiny_bert()
    cfg = peft.AdaLoraConfig(
        task_type="SEQ_CLS",
        init_r=2,
        target_r=1,
        total_step=4,
        target_modules=["query", "value"],
        exclude_modules=["bert.encoder.layer.0.attention.self.query"],
    )
    pm = peft.get_peft_model(copy.deepcopy(base), cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    pm.eval().save_pretrained(tmp_path)
    with torch.no_grad():
        ref = pm(input_ids=X).logits
    om = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert set(om.adapter_layers()) == set(pm.base_model.targeted_module_names)
    assert len(om.adapter_layers()) == 3
    with torch.no_grad():
        torch.testing.assert_close(om(input_ids=X).logits, ref, rtol=0, atol=1e-6)
