"""GLUE with AdaLoRA, LoRA, full fine-tuning or BitFit: one run, one result file.

    python experiments/glue.py --task rte --method adalora            # quick preset, MiniLM, CPU
    python experiments/glue.py --task rte --method lora --target-r 2  # LoRA at the matched budget
    python experiments/glue.py --preset paper --task rte --method adalora \
        --model microsoft/deberta-v3-base --dry-run                   # the paper's configuration

Data: --data-dir (or GLUE_DIR) in the official GLUE TSV layout, else the Hub (nyu-mll/glue).
Every flag overrides the preset; --help lists them. Flags: experiments/config.py GlueConfig;
presets: experiments/presets.py GLUE; the task: experiments/glue_task.py.
Results: results/runs/<run-name>.json.
"""

from __future__ import annotations

from experiments import cli, presets
from experiments.config import GlueConfig
from experiments.glue_task import make_task


def main(argv=None):
    """Run glue.py on ``argv`` (default: sys.argv[1:]); returns the result record (None for
    --dry-run)."""
    return cli.main(GlueConfig, presets.GLUE, make_task, __file__, __doc__, argv)


if __name__ == "__main__":
    main()
