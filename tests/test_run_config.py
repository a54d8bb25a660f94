"""The runners' typed config (experiments/config.py) and the registries it reads: every flag
wins over both presets, a flag is never dropped silently, presets and configs hold only declared
keys, the config is frozen, and the method / task registries are complete."""

from __future__ import annotations

import argparse
import dataclasses
import typing

import pytest

from experiments import config, presets
from experiments.config import GlueConfig, RunConfig, SummConfig, build_parser, resolve
from experiments.methods import METHOD_HP, METHODS
from experiments.tasks import TASKS
from experiments.validation.base import BadInput
from experiments.validation.checks import check_flags, unused_flags

RUNNERS = {GlueConfig: presets.GLUE, SummConfig: presets.SUMMARIZATION}


def flags_of(cls, *argv) -> dict:
    return vars(build_parser(cls, "test").parse_args(list(argv)))


def cfg_of(cls, *argv) -> RunConfig:
    return resolve(cls, RUNNERS[cls], flags_of(cls, *argv))


def _value_for(f, hint) -> tuple[str, object]:
    """A command-line value for flag field ``f`` that no preset uses, and what it parses to."""
    choices = f.metadata.get("choices")
    if choices:
        return choices[-1], choices[-1]
    if f.name == "target_modules":
        return "query,value", ("query", "value")
    types = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
    if types[0] is bool:
        return "yes", True
    if types[0] is int:
        return "7", 7
    if types[0] is float:
        return "0.37", 0.37
    return "some-text", "some-text"


def hp_flag_fields(cls):
    return [f for f in config.flag_fields(cls) if f.metadata["kind"] == "hp"]


# --------------------------------------------------------------------------- flags win
@pytest.mark.parametrize("cls", [GlueConfig, SummConfig])
@pytest.mark.parametrize("preset", config.PRESET_NAMES)
def test_every_given_flag_wins_over_the_preset(cls, preset):
    hints = typing.get_type_hints(cls)
    for f in hp_flag_fields(cls):
        text, want = _value_for(f, hints[f.name])
        flag = config.option_strings(f)[0]
        cfg = cfg_of(cls, "--preset", preset, "--method", "adalora", flag, text)
        got = getattr(cfg, f.name)
        if f.name == "budget_level":  # the level becomes a float (and sets target_r)
            want = float(want)
        assert got == want, f"{preset}: {f.name} = {got!r}, the flag said {want!r}"
        assert f.name in cfg.given


def test_a_given_seed_wins_over_the_presets():
    """The paper preset's seed (the authors' scripts') unless --seed is given, 42 elsewhere."""
    assert cfg_of(GlueConfig, "--preset", "paper").seed == presets.PAPER_SEED == 6
    assert cfg_of(GlueConfig, "--preset", "paper", "--seed", "42").seed == 42
    assert cfg_of(GlueConfig, "--preset", "quick").seed == 42
    assert cfg_of(SummConfig, "--preset", "paper").seed == 42
    assert "seed" in cfg_of(GlueConfig, "--seed", "42").given
    assert "seed" not in cfg_of(GlueConfig).given


@pytest.mark.parametrize("cls", [GlueConfig, SummConfig])
@pytest.mark.parametrize("rank_flag", [("--target-r", "4"), ("--budget", "288")])
def test_a_given_final_rank_replaces_the_presets_initial_rank(cls, rank_flag):
    """The paper presets pair init_r with their own target_r (GLUE 2-3 -> 1, XSum 12 -> 8): a
    given --target-r / --budget leaves init_r to the 1.5 x rule (with_budget), unless --init-r is
    given too; methods that do not read init_r keep the preset's (unused) value."""
    task = ("--task", "xsum" if cls is SummConfig else "rte")
    preset_init_r = cfg_of(cls, "--preset", "paper", *task).init_r
    for method in ("adalora", "prune_lora"):
        cfg = cfg_of(cls, "--preset", "paper", *task, "--method", method, *rank_flag)
        assert cfg.init_r is None and cfg.with_budget(72).init_r == 6, method
        cfg = cfg_of(
            cls, "--preset", "paper", *task, "--method", method, *rank_flag, "--init-r", "9"
        )
        assert cfg.with_budget(72).init_r == 9
    assert cfg_of(cls, "--preset", "paper", *task, "--method", "lora", *rank_flag).init_r == (
        preset_init_r
    )


def test_a_preset_value_its_source_lacks_needs_the_flag():
    """The paper preset has no LR for full fine-tuning or BitFit: --lr decides, else one line."""
    for method in ("full", "bitfit"):
        with pytest.raises(BadInput, match="no learning rate") as e:
            cfg_of(GlueConfig, "--preset", "paper", "--method", method)
        assert e.value.flag == "--lr" and "pass --lr" in e.value.line()
        assert (
            cfg_of(GlueConfig, "--preset", "paper", "--method", method, "--lr", "2e-5").lr == 2e-5
        )
    assert (
        cfg_of(GlueConfig, "--preset", "quick", "--method", "full").lr == METHODS["full"].quick_lr
    )


@pytest.mark.parametrize("preset", config.PRESET_NAMES)
def test_a_given_fraction_replaces_the_presets_step_count(preset):
    cfg = cfg_of(GlueConfig, "--preset", preset, "--task", "rte", "--tinit-frac", "0.1")
    assert cfg.tinit is None and cfg.tinit_frac == 0.1  # the fraction decides once T is known
    T = cfg.with_schedule(n_train=2490).total_step
    assert cfg.with_schedule(n_train=2490).tinit == round(0.1 * T)
    # the other step count stays the preset's
    want = TASKS["rte"].paper.tfinal if preset == "paper" else round(0.45 * T)
    assert cfg.with_schedule(n_train=2490).tfinal == want


def test_the_paper_presets_steps_without_flags():
    cfg = cfg_of(GlueConfig, "--preset", "paper", "--task", "rte").with_schedule(2490)
    assert (cfg.tinit, cfg.tfinal, cfg.total_step) == (600, 1800, 50 * 78)
    assert "tinit_frac" not in cfg.hyperparameters()  # recorded only when set, as always


@pytest.mark.parametrize(
    "argv, loser",
    [
        (["--tinit", "100", "--tinit-frac", "0.2"], "--tinit-frac"),
        (["--tfinal", "100", "--tfinal-frac", "0.2"], "--tfinal-frac"),
        (["--max-steps", "300", "--epochs", "2"], "--epochs"),
        (["--budget", "144", "--target-r", "4"], "--target-r"),
    ],
)
def test_two_flags_for_one_quantity_stop_the_run(argv, loser, tmp_path):
    cfg = cfg_of(GlueConfig, "--output-dir", str(tmp_path), *argv)
    with pytest.raises(BadInput, match="not both") as e:
        check_flags(cfg)
    assert e.value.flag == loser


def test_flags_a_method_does_not_read_are_named():
    cfg = cfg_of(GlueConfig, "--method", "full", "--target-r", "2", "--lr", "1e-4")
    assert unused_flags(cfg) == ["--target-r"]  # --lr is every method's
    cfg = cfg_of(GlueConfig, "--method", "lora", "--tinit", "5", "--lora-r", "2")
    assert unused_flags(cfg) == ["--tinit"]
    assert unused_flags(cfg_of(GlueConfig, "--method", "adalora", "--tinit", "5")) == []


def test_summarization_has_no_classification_dropout_flag():
    with pytest.raises(SystemExit):
        flags_of(SummConfig, "--cls-dropout", "0.2")
    assert cfg_of(SummConfig).hyperparameters()["cls_dropout"] is None  # recorded as before


# --------------------------------------------------------------------------- declared keys only
def test_a_preset_key_that_is_no_field_is_refused():
    extra = {"quick": lambda t, m: {**presets.glue_quick(t, m), "learning_rate": 1e-3}}
    with pytest.raises(TypeError, match="learning_rate"):
        resolve(GlueConfig, extra, flags_of(GlueConfig))


def test_a_preset_that_leaves_a_hyperparameter_out_is_refused():
    def without_lr(task, method):
        return {k: v for k, v in presets.glue_quick(task, method).items() if k != "lr"}

    lacking = {"quick": without_lr}
    with pytest.raises(TypeError, match="lacks \\['lr'\\]"):
        resolve(GlueConfig, lacking, flags_of(GlueConfig))


def test_no_step_adds_an_undeclared_key():
    cfg = cfg_of(GlueConfig)
    with pytest.raises(TypeError):
        dataclasses.replace(cfg, learning_rate=1e-3)
    with pytest.raises(TypeError):
        GlueConfig(num_beams=4)  # a summarisation field is no GLUE field


def test_two_fields_cannot_share_a_flag():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Clash(GlueConfig):
        rate: float | None = config.hp("another learning rate", flags=("--lr",))

    with pytest.raises(argparse.ArgumentError):
        build_parser(Clash, "clash")


def test_unknown_and_repeated_flags():
    with pytest.raises(SystemExit):
        flags_of(GlueConfig, "--learning-rate", "1e-3")
    # argparse keeps the last of a repeated flag; the config then holds that one value
    assert cfg_of(GlueConfig, "--lr", "1e-3", "--lr", "2e-3").lr == 2e-3


# --------------------------------------------------------------------------- frozen
def test_the_config_is_frozen():
    cfg = cfg_of(GlueConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    planned = cfg.with_budget(72)
    assert planned is not cfg and cfg.n_modules is None and planned.n_modules == 72
    cfg = cfg_of(GlueConfig, "--target-modules", "query,value")
    assert cfg.target_modules == ("query", "value")  # a tuple, recorded as a list
    assert cfg.hyperparameters()["target_modules"] == ["query", "value"]


# --------------------------------------------------------------------------- fields
@pytest.mark.parametrize("cls", [GlueConfig, SummConfig])
def test_every_flag_has_help_and_every_preset_key_a_field(cls):
    for f in config.flag_fields(cls):
        assert f.metadata["help"].strip(), f.name
    hps = {f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") == "hp"}
    settable = hps | {f.name for f in dataclasses.fields(cls) if f.metadata.get("from_preset")}
    assert settable - hps == {"seed"}  # the one run setting a preset may set
    for name, preset in RUNNERS[cls].items():
        for task in cls.__dataclass_fields__["task"].metadata["choices"]:
            for method in METHODS:
                assert set(preset(task, method)) <= settable, (name, task, method)


# --------------------------------------------------------------------------- registries
def test_method_registry_is_what_the_cli_offers():
    parser = build_parser(GlueConfig, "glue")
    method = next(a for a in parser._actions if a.dest == "method")
    assert tuple(method.choices) == tuple(METHODS)
    hps = {f.name for f in dataclasses.fields(GlueConfig) if f.metadata.get("kind") == "hp"}
    for m in METHODS.values():
        assert m.reads <= hps, m.name  # every hyperparameter a method reads is a field
        assert m.allocates <= m.adapters and m.quick_lr > 0 and m.label and m.help
    assert METHOD_HP <= hps


def test_task_registry_has_every_tasks_preset_rows():
    assert set(GlueConfig.__dataclass_fields__["task"].metadata["choices"]) == set(TASKS)
    for t in TASKS.values():
        assert t.paper is not None and t.quick is not None, t.name
        assert t.main_metric in t.metrics
