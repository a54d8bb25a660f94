"""Adapter layers: SVD-form AdaLoRA (dW = P diag(lambda) Q) and fixed-rank LoRA (dW = B A).

Both wrap an ``nn.Linear`` (weight out x in) or transformers' ``Conv1D`` (weight in x out,
``fan_in_fan_out``). Shapes, with r the layer's current rank:

    SVDLinear   lora_A = Q (r x in), lora_E = lambda (r x 1), lora_B = P (out x r)
                y = base(x) + dropout(x) @ (Q * lambda)^T @ P^T * alpha / (r_init + 1e-5)
    LoraLinear  lora_A = A (r x in), lora_B = B (out x r)
                y = base(x) + dropout(x) @ A^T @ B^T * alpha / r

The SVD scale divides by the *initial* rank for the whole run (masking or resizing never
change it); the +1e-5 is what both the authors' code and PEFT do, kept for exact interop.
Adapter parameters stay in their own dtype (fp32) under mixed precision. ``device="meta"``
creates them without storage (PEFT's ``low_cpu_mem_usage``): they are filled in later by
``load_state_dict(..., assign=True)`` or ``AdaLoraModel.from_pretrained``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def base_weight_shape(base: nn.Module, fan_in_fan_out: bool) -> tuple[int, int]:
    """(out_features, in_features) of a Linear (fan_in_fan_out False) or Conv1D (True)."""
    w = base.weight
    return (w.shape[1], w.shape[0]) if fan_in_fan_out else (w.shape[0], w.shape[1])


class _AdapterLayer(nn.Module):
    """What both adapters share: the frozen base layer, input dropout and merge state."""

    def __init__(self, base: nn.Module, dropout: float, fan_in_fan_out: bool):
        super().__init__()
        self.base_layer = base
        self.fan_in_fan_out = fan_in_fan_out
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features, self.in_features = base_weight_shape(base, fan_in_fan_out)
        self.merged = False
        for p in base.parameters():
            p.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped layer's weight: models read it (T5: ``self.wo.weight.dtype``)."""
        return self.base_layer.weight

    @property
    def bias(self):
        return self.base_layer.bias

    # subclasses define: r, scale, _down() -> (r x in) matrix, lora_B (out x r)
    def _down(self) -> torch.Tensor:
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        """dW in the base layer's weight layout (out x in, or in x out for Conv1D)."""
        dw = (self.lora_B @ self._down()) * self.scale
        return dw.T if self.fan_in_fan_out else dw

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            w = self.base_layer.weight
            w.add_(self.delta_weight().to(w.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            w = self.base_layer.weight
            w.sub_(self.delta_weight().to(w.dtype))
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged or self.r == 0:
            return y
        a = self.lora_A
        h = self.lora_dropout(x).to(a.dtype) @ self._down().T  # (..., r)
        return y + (h @ self.lora_B.T * self.scale).to(y.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, scale={self.scale:.4g}"


class SVDLinear(_AdapterLayer):
    """AdaLoRA layer. ``lambda`` starts at 0, so the wrapped model is unchanged at init.

    ``prune_lora=True`` builds the paper's "Prune LoRA" ablation instead: P = 0 and Q with
    LoRA's init, lambda fixed at 1 (not trained) so it only acts as the 0/1 rank gate.
    """

    def __init__(
        self,
        base: nn.Module,
        r: int,
        lora_alpha: float,
        dropout: float = 0.0,
        fan_in_fan_out: bool = False,
        prune_lora: bool = False,
        device: torch.device | str | None = None,
    ):
        super().__init__(base, dropout, fan_in_fan_out)
        self.r_init = r
        alpha = lora_alpha if lora_alpha > 0 else float(r)
        self.scale = alpha / (r + 1e-5)
        dev = base.weight.device if device is None else device
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=dev))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, device=dev))
        self.lora_E = nn.Parameter(torch.empty(r, 1, device=dev))
        self.prune_lora = prune_lora
        self.reset_parameters()

    @property
    def r(self) -> int:
        return self.lora_E.shape[0]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.prune_lora:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)
            nn.init.ones_(self.lora_E)
            self.lora_E.requires_grad_(False)
        else:
            nn.init.normal_(self.lora_A, mean=0.0, std=0.02)
            nn.init.normal_(self.lora_B, mean=0.0, std=0.02)
            nn.init.zeros_(self.lora_E)

    def _down(self) -> torch.Tensor:
        return self.lora_A * self.lora_E  # (r x in): rows of Q scaled by lambda

    @torch.no_grad()
    def resize(self, keep: torch.Tensor) -> None:
        """Keep only the triplets where ``keep`` (bool, length r) is True; rank 0 allowed."""
        if self.merged:
            raise RuntimeError("unmerge() before resizing an adapter.")
        keep = torch.as_tensor(keep, dtype=torch.bool).view(-1)
        if keep.numel() != self.r:
            raise ValueError(f"rank mask has {keep.numel()} entries, layer rank is {self.r}.")
        grad_e = self.lora_E.requires_grad
        if self.lora_A.is_meta:  # low_cpu_mem_usage: only the shapes change, weights come later
            k = int(keep.cpu().sum())
            self.lora_A = nn.Parameter(self.lora_A.new_empty(k, self.in_features))
            self.lora_B = nn.Parameter(self.lora_B.new_empty(self.out_features, k))
            self.lora_E = nn.Parameter(self.lora_E.new_empty(k, 1), requires_grad=grad_e)
            return
        keep = keep.to(self.lora_E.device)
        self.lora_A = nn.Parameter(self.lora_A[keep].clone())
        self.lora_B = nn.Parameter(self.lora_B[:, keep].clone())
        self.lora_E = nn.Parameter(self.lora_E[keep].clone(), requires_grad=grad_e)


class LoraLinear(_AdapterLayer):
    """Fixed-rank LoRA layer with loralib's init: A ~ kaiming-uniform, B = 0."""

    def __init__(
        self,
        base: nn.Module,
        r: int,
        lora_alpha: float,
        dropout: float = 0.0,
        fan_in_fan_out: bool = False,
        device: torch.device | str | None = None,
    ):
        super().__init__(base, dropout, fan_in_fan_out)
        self.scale = lora_alpha / r
        dev = base.weight.device if device is None else device
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=dev))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=dev))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def r(self) -> int:
        return self.lora_A.shape[0]

    def _down(self) -> torch.Tensor:
        return self.lora_A
