"""Checkpoints of a run, so that a killed run resumes where it stopped (--save-steps, --resume).

``--save-steps N`` makes the Trainer write a checkpoint every N optimizer steps into
``<output-dir>/checkpoints/<run-name>/checkpoint-<step>/`` (git-ignored), keeping the last two:

- ``model.safetensors``: what training changes: the trainable parameters (adapters, heads) and
  every buffer, the AdaLoRA allocator's included (importance EMAs, rank mask, last step: it is
  part of the AdaLoraModel's state dict); the frozen base weights come back from --model
  (SplitEvalMixin._save in experiments/trainer.py);
- ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``: the Trainer's own;
- ``trainer_state.json``: step, log history (the record's train_log), and the state of the
  callbacks the record reads (``TrainerState.stateful_callbacks``): EvalRecorder's evaluation
  rows, DivergenceGuard's flag, AdaLoraCallback's budget curve. ``restore_callbacks`` puts them
  back into the run's callback objects (the Trainer's own restore would replace the objects).

Beside them, ``run.json`` holds the run's resolved settings: a resume with other settings is
refused. ``--resume`` continues from the latest complete checkpoint (one whose
trainer_state.json, written last, reads back); re-running the same command with the same
--run-name does so by itself while no result file exists. Once the result file is written the
run's checkpoints are deleted, unless --keep-checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "trainer_state.json"
RUN_FILE = "run.json"
KEEP_LAST = 2  # checkpoints kept on disk (the Trainer's save_total_limit)


def checkpoint_root(output_dir, run_name: str) -> Path:
    return Path(output_dir) / "checkpoints" / run_name


def _step(path: Path) -> int:
    m = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(m.group(1)) if m else -1


def _complete(path: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint whose state reads back is whole."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and (path / "model.safetensors").is_file()


def latest_checkpoint(root) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = sorted((p for p in root.iterdir() if _step(p) >= 0), key=_step, reverse=True)
    return next((p for p in found if _complete(p)), None)


def _settings(cfg) -> dict:
    """What must not change between a run and its resumption (JSON round-tripped)."""
    view = {
        "task": cfg.task,
        "method": cfg.method,
        "seed": cfg.seed,
        "preset": cfg.preset,
        "hp": cfg.hyperparameters(),
    }
    return json.loads(json.dumps(view, sort_keys=True, default=str))


@dataclass
class Checkpointing:
    root: Path
    save_steps: int | None
    resume_from: Path | None
    keep: bool

    def trainer_kwargs(self) -> dict:
        """TrainingArguments that make the Trainer save (none without --save-steps)."""
        if not self.save_steps:
            return {}
        return {
            "output_dir": str(self.root),
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": KEEP_LAST,
            "save_only_model": False,
        }


def plan(cfg, run_name: str) -> Checkpointing:
    """Where the run's checkpoints go and the one to resume from (None: start afresh). Raises
    validation.base.BadInput when the checkpoints were made with other settings. Writes nothing."""
    from experiments.validation.base import BadInput

    root = checkpoint_root(cfg.output_dir, run_name)
    last = latest_checkpoint(root)
    if last is not None:
        try:
            saved = json.loads((root / RUN_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            saved = None
        now = _settings(cfg)
        if saved != now:
            diff = _first_difference(saved, now)
            raise BadInput(
                "--run-name",
                run_name,
                f"its checkpoint {last} was made with other settings ({diff})",
                "rerun the original command to resume it, or pick another --run-name "
                f"(or delete {root})",
            )
    return Checkpointing(root, cfg.save_steps, last, cfg.keep_checkpoints)


def _first_difference(saved, now) -> str:
    if not isinstance(saved, dict):
        return f"{RUN_FILE} missing or unreadable"
    for k in now:
        if k != "hp" and saved.get(k) != now[k]:
            return f"{k}: {saved.get(k)!r} then, {now[k]!r} now"
    old, new = saved.get("hp") or {}, now["hp"]
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            return f"{k}: {old.get(k)!r} then, {new.get(k)!r} now"
    return "unknown difference"


def start(ck: Checkpointing, cfg) -> None:
    """Before training: a fresh run clears what a run killed before its first complete
    checkpoint left, and records its settings (only when it will save checkpoints)."""
    if ck.resume_from is not None or not ck.save_steps:
        return
    if ck.root.exists():
        shutil.rmtree(ck.root)
    ck.root.mkdir(parents=True)
    (ck.root / RUN_FILE).write_text(json.dumps(_settings(cfg), indent=1, sort_keys=True))


def restore_callbacks(checkpoint: Path, callbacks: list) -> None:
    """Set the saved attributes of every callback with a ``state()`` (transformers'
    ExportableState) from the checkpoint's trainer_state.json, on the objects themselves."""
    stored = json.loads((Path(checkpoint) / STATE_FILE).read_text()).get("stateful_callbacks", {})
    for cb in callbacks:
        data = stored.get(type(cb).__name__)
        if isinstance(data, list):
            data = data[-1] if data else None
        for name, value in (data or {}).get("attributes", {}).items():
            setattr(cb, name, value)


def finish(ck: Checkpointing) -> None:
    """After the result file: delete the run's checkpoints (unless --keep-checkpoints), and the
    checkpoints folder when nothing else is in it."""
    if ck.keep or not ck.root.exists():
        return
    shutil.rmtree(ck.root, ignore_errors=True)
    try:
        ck.root.parent.rmdir()
    except OSError:
        pass
