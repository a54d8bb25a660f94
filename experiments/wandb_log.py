"""W&B logging of a run: the config, the main metric at every evaluation, and at the end the
summary, the budget curve and the final ranks (a table and a heatmap).

The Trainer's own WandbCallback logs the losses, the learning rate and what AdaLoraCallback
adds to the logs (budget, mask threshold, orth-reg value, ranks); this module adds the rest.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from transformers import TrainerCallback


def wandb_mode(flag: str | None) -> str:
    """--wandb, else $WANDB_MODE, else online when logged in, else offline; disabled when
    wandb is not installed."""
    if flag:
        return flag
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        import wandb
    except ImportError:
        print("W&B: wandb is not installed; logging off", file=sys.stderr)
        return "disabled"
    try:
        return "online" if wandb.api.api_key else "offline"
    except Exception:  # no readable login: log locally
        return "offline"


def start(mode: str, project: str, run_name: str, output_dir: str, config: dict, tags: list[str]):
    """wandb.init for this run; its files go beside the output dir (in <its parent>/wandb)."""
    import wandb

    wb = wandb.init(
        project=project,
        name=run_name,
        mode=mode,
        dir=str(Path(output_dir).resolve().parent),
        reinit="finish_previous",
        config=config,
        tags=tags,
    )
    wb.define_metric("eval/main", summary="max")
    return wb


class MainMetricLogger(TrainerCallback):
    """Log ``eval/main``, the main metric on the primary split, at every evaluation (the metric
    that W&B sweeps maximise)."""

    def __init__(self, wb, split: str, metric: str):
        self.wb, self.key = wb, f"eval_{split}_{metric}"

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and self.key in metrics:
            self.wb.log({"eval/main": metrics[self.key], "train/global_step": state.global_step})


def finish(wb, record: dict) -> None:
    """Summary metrics, the budget curve, and the final ranks as a table and a heatmap."""
    import wandb

    m = record["metrics"]
    wb.summary.update(
        {
            "eval/main_best": m["main_best"],
            "eval/main_final": m["main_final"],
            "status": record["status"],
            "params/final_adapter": record["params"]["final_adapter"],
            "params/trainable": record["params"]["trainable"],
        }
    )
    if record["budget"] and record["budget"]["curve"]:
        wb.log(
            {
                "adalora/budget_curve": wandb.plot.line(
                    wandb.Table(data=record["budget"]["curve"], columns=["step", "budget"]),
                    "step",
                    "budget",
                    title="budget b(t)",
                )
            }
        )
    if record["rank_pattern"]:
        rows = [[k, v] for k, v in sorted(record["rank_pattern"].items())]
        wb.log({"adalora/final_ranks": wandb.Table(data=rows, columns=["module", "rank"])})
        _log_rank_heatmap(wb, record)
    wb.finish()


def _log_rank_heatmap(wb, record: dict) -> None:
    """The final ranks as the tables' heatmap (experiments/plots.py); says why when it cannot."""
    import wandb

    from experiments.plots import rank_heatmap_figure

    try:
        fig = rank_heatmap_figure(record["rank_pattern"], title=record["run_name"])
    except ImportError as e:
        if not (e.name or "").startswith("matplotlib"):
            raise
        warnings.warn(
            f"W&B: no rank heatmap logged: {e} (pip install -e '.[experiments]')", stacklevel=2
        )
        return
    if fig is None:
        print("W&B: no rank heatmap logged (no module name has a layer index)", file=sys.stderr)
        return
    wb.log({"adalora/rank_heatmap": wandb.Image(fig)})
