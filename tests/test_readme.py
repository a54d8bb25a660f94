"""The README's library example runs as written (on a tiny BERT): wrap, a training step,
allocation, save, load onto a freshly loaded base model, merge."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from adalora_helpers import tiny_bert

from adalora.layers import _AdapterLayer

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_library_example_runs(tmp_path):
    code = re.search(r"## The library\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    ns: dict = {}

    class Optimizer:  # the example's optimizer, over the model it builds
        def step(self):
            params = [p for p in ns["model"].parameters() if p.requires_grad]
            torch.optim.SGD(params, lr=0.1).step()

    ids = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    ns.update(
        base_model=tiny_bert(),
        fresh_base_model=tiny_bert(),
        batch={"input_ids": ids, "labels": torch.tensor([0, 1])},
        optimizer=Optimizer(),
        step=0,
        path=str(tmp_path / "adapter"),
    )
    exec(compile(code, str(README), "exec"), ns)
    # 4 matrices (query, value in 2 layers) x init_r 12 = 48 before tinit
    assert ns["budget"] == 48 and ns["rank_pattern"] is None
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert not any(isinstance(m, _AdapterLayer) for m in ns["merged"].modules())
