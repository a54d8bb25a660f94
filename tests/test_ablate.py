"""scripts/ablate.py (grid expansion, names, flags, resume, failures, validation) and the W&B
sweep files under experiments/sweeps/."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from scripts import ablate

ROOT = Path(__file__).resolve().parents[1]
GRID = ["tinit=100,200", "tfinal=300", "delta_t=1,10", "beta1=0.85", "orth_reg_weight=0.1,0.5"]


def test_expand_count_and_order():
    grid = ablate.parse_grid(GRID)
    assert list(grid) == sorted(grid)
    points = ablate.expand(grid)
    assert len(points) == 2 * 1 * 2 * 1 * 2
    assert points[0] == {
        "beta1": "0.85",
        "delta_t": "1",
        "orth_reg_weight": "0.1",
        "tfinal": "300",
        "tinit": "100",
    }
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 8
    runs = ablate.plan(["rte"], ["adalora"], grid, [1, 2, 3], "results/ablations")
    assert len(runs) == 24 and len({n for n, _ in runs}) == 24


def test_run_name_deterministic():
    name = ablate.run_name("rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1)
    assert name == "abl-rte-adalora-delta_t=1-tinit=100-s1"
    assert ablate.run_name("rte", "adalora", {"delta_t": "1", "tinit": "100"}, 1) == name
    # extra glue.py args change the name (a different configuration is not "done")
    other = ablate.run_name(
        "rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1, ["--preset", "paper"]
    )
    assert other != name and other.endswith("-s1")
    assert (
        ablate.run_name(
            "rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1, ["--preset", "paper"]
        )
        == other
    )


def test_command_flags():
    point = {
        "delta_t": "10",
        "orth_reg_weight": "0.5",
        "beta1": "0.85",
        "lr": "1e-3",
        "target_r": "4",
        "schedule": "linear",
    }
    cmd = ablate.build_command(
        "rte", "adalora", point, 2, "results/ablations", ["--preset", "quick"]
    )
    assert cmd[1] == "experiments/glue.py"
    args = cmd[2:]
    pairs = dict(zip(args[::2], args[1::2]))
    assert pairs["--task"] == "rte" and pairs["--method"] == "adalora" and pairs["--seed"] == "2"
    assert pairs["--delta-t"] == "10" and pairs["--orth-reg-weight"] == "0.5"
    assert pairs["--beta1"] == "0.85" and pairs["--lr"] == "1e-3"
    assert pairs["--target-r"] == "4" and pairs["--schedule"] == "linear"
    assert pairs["--output-dir"] == "results/ablations" and pairs["--preset"] == "quick"
    assert pairs["--run-name"] == ablate.run_name("rte", "adalora", point, 2, ["--preset", "quick"])
    assert json.loads(pairs["--sweep-json"]) == {
        "delta_t": 10,
        "orth_reg_weight": 0.5,
        "beta1": 0.85,
        "lr": 1e-3,
        "target_r": 4,
        "schedule": "linear",
    }
    assert all(a in ablate.GLUE_FLAGS for a in args[::2])


def test_schedules_shortcut():
    assert ablate.parse_grid([], ["cubic", "linear", "constant"]) == ablate.parse_grid(
        ["schedule=cubic,linear,constant"]
    )


def test_unknown_key_error(capsys):
    with pytest.raises(ablate.GridError, match="unknown grid key 'tini'.*tinit"):
        ablate.parse_grid(["tini=100"])
    with pytest.raises(SystemExit) as e:
        ablate.main(["--task", "rte", "--grid", "foo_bar=1", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "foo_bar" in err and "delta_t" in err and "orth_reg_weight" in err
    with pytest.raises(ablate.GridError, match="set by ablate.py"):
        ablate.parse_grid(["seed=1,2"])
    with pytest.raises(ablate.GridError, match="invalid value"):
        ablate.parse_grid(["schedule=cubic,square"])
    with pytest.raises(ablate.GridError, match="set by ablate.py"):
        ablate.check_extra(["--run-name", "x"])


class FakeRunner:
    """Stands in for subprocess.run: records commands, writes the result file glue.py would."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)

    def __call__(self, cmd, cwd=None, check=False, **kw):
        self.calls.append(cmd)
        name = cmd[cmd.index("--run-name") + 1]
        out = Path(cwd) / cmd[cmd.index("--output-dir") + 1]
        if name in self.fail:
            return subprocess.CompletedProcess(cmd, 1)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0)


def test_resume_skips_existing(tmp_path, monkeypatch, capsys):
    fake = FakeRunner()
    monkeypatch.setattr(ablate.subprocess, "run", fake)
    out = tmp_path / "abl"
    out.mkdir()
    done = ablate.run_name("rte", "adalora", {"tinit": "100", "delta_t": "1"}, 1)
    (out / f"{done}.json").write_text("{}")
    rc = ablate.main(
        [
            "--task",
            "rte",
            "--grid",
            "tinit=100,200",
            "delta_t=1",
            "--seeds",
            "1",
            "2",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0
    names = [c[c.index("--run-name") + 1] for c in fake.calls]
    assert len(names) == 3 and done not in names
    text = capsys.readouterr().out
    assert f"{done}: skip" in text
    # second invocation: everything exists -> nothing runs
    fake.calls.clear()
    assert (
        ablate.main(
            [
                "--task",
                "rte",
                "--grid",
                "tinit=100,200",
                "delta_t=1",
                "--seeds",
                "1",
                "2",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    assert fake.calls == []


def test_failures_reported(tmp_path, monkeypatch, capsys):
    bad = ablate.run_name("rte", "adalora", {"tinit": "200"}, 1)
    fake = FakeRunner(fail={bad})
    monkeypatch.setattr(ablate.subprocess, "run", fake)
    rc = ablate.main(
        ["--task", "rte", "--grid", "tinit=100,200", "--output-dir", str(tmp_path / "abl")]
    )
    assert rc == 1 and len(fake.calls) == 2  # the failure does not stop the grid
    err = capsys.readouterr().err
    assert "FAILED" in err and bad in err and "exit status 1" in err


def test_dry_run_runs_nothing(tmp_path, monkeypatch, capsys):
    fake = FakeRunner()
    monkeypatch.setattr(ablate.subprocess, "run", fake)
    assert (
        ablate.main(
            [
                "--task",
                "rte",
                "cola",
                "--schedules",
                "cubic",
                "linear",
                "--dry-run",
                "--output-dir",
                str(tmp_path),
                "--",
                "--preset",
                "quick",
            ]
        )
        == 0
    )
    assert fake.calls == []
    out = capsys.readouterr().out
    assert out.count("experiments/glue.py") == 4 and "--schedule linear" in out


def test_glue_flags_are_the_glue_parsers():
    from experiments import glue

    options = {o for a in glue.build_parser()._actions for o in a.option_strings}
    assert set(ablate.GLUE_FLAGS) == options - {"-h", "--help"}
    assert {"--delta-t", "--tinit", "--schedule", "--variant", "--precision"} <= options
    assert ablate.CHOICES["schedule"] == ("cubic", "linear", "constant")


SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def test_sweep_files_exist():
    assert {p.name for p in SWEEPS} >= {
        "lr_quick.yaml",
        "schedule_rte.yaml",
        "schedule_shapes.yaml",
    }


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_yaml(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["program"] == "experiments/glue.py"
    assert cfg["metric"] == {"name": "eval/main", "goal": "maximize"}
    assert cfg["method"] in ("grid", "bayes", "random")
    assert cfg["command"] == ["${env}", "python", "${program}", "--wandb", "online", "${args}"]
    for name, spec in cfg["parameters"].items():
        assert "--" + name in ablate.GLUE_FLAGS, f"{path.name}: {name} is not a glue.py flag"
        assert "value" in spec or "values" in spec
        if name in ablate.CHOICES:
            vals = spec.get("values", [spec.get("value")])
            assert set(vals) <= set(ablate.CHOICES[name])
