"""adalora: AdaLoRA (Zhang et al., ICLR 2023) and a fixed-rank LoRA baseline in PyTorch.

Needs only torch (and transformers for the Trainer callback and Conv1D support).
"""

from .allocator import RankAllocator, RankPattern
from .config import AdaLoraConfig, LoraConfig
from .layers import LoraLinear, SVDLinear
from .model import AdaLoraModel, orth_regularizer
from .schedule import budget_at, budget_curve
from .targets import DEFAULT_TARGET_MODULES, TASK_HEADS, find_targets

__version__ = "0.1.0"


def __getattr__(name):  # the callback imports transformers: load it only when asked for
    if name in ("AdaLoraCallback", "AdaLoRACallback"):
        from .callback import AdaLoraCallback

        return AdaLoraCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaLoraConfig",
    "LoraConfig",
    "AdaLoraModel",
    "AdaLoraCallback",
    "AdaLoRACallback",
    "RankAllocator",
    "RankPattern",
    "SVDLinear",
    "LoraLinear",
    "orth_regularizer",
    "budget_at",
    "budget_curve",
    "DEFAULT_TARGET_MODULES",
    "find_targets",
    "TASK_HEADS",
]
