"""Importance-scored rank allocation over all SVD adapters at once.

State (all registered buffers, so ``state_dict()`` checkpoints it and a resumed run continues
identically): sensitivity EMA ``Ibar`` and uncertainty EMA ``Ubar`` of every adapter entry, the
current keep-mask (n_modules x r_init), and the last step processed.

Speed: the adapters of one shape are handled as one stacked tensor, and every arithmetic step
is one ``torch._foreach_*`` call over all shape groups (one fused kernel on CUDA), so an update
is about 30 kernels whatever the number of adapters, plus one k-th value, instead of PEFT's
loop of small ops over every parameter. ``update_and_allocate`` never reads a tensor back to
the host: the step counter has a Python mirror, and the threshold and rank pattern stay on the
device until a caller asks for them (``threshold``, ``RankPattern``). Per entry w with
gradient g (the paper's smoothed sensitivity and uncertainty; PEFT 0.21 RankAllocator):

    I    = |w * g|
    Ibar = beta1 * Ibar + (1 - beta1) * I
    Ubar = beta2 * Ubar + (1 - beta2) * |I - Ibar|
    s    = Ibar * Ubar
    S_i  = s(lambda_i) + mean_j s(Q_ij) + mean_k s(P_ki)       (triplet score)

The arithmetic follows PEFT's operation order exactly, so scores and masks match bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from .config import AdaLoraConfig
from .layers import SVDLinear
from .schedule import budget_at


class RankPattern(Mapping):
    """{"<module>.lora_E": [bool] * r_init}, read from the device only when first accessed.

    Masking every step would otherwise force a GPU sync per step just to build a dict."""

    def __init__(self, names: list[str], mask: torch.Tensor):
        self._names, self._mask, self._dict = names, mask, None

    def _materialise(self) -> dict:
        if self._dict is None:
            rows = self._mask.cpu().tolist()
            self._dict = {f"{n}.lora_E": row for n, row in zip(self._names, rows)}
        return self._dict

    def __getitem__(self, k):
        return self._materialise()[k]

    def __iter__(self):
        return iter(self._materialise())

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return f"RankPattern({self._materialise()!r})"


class _Group(NamedTuple):
    """The modules whose lora_A (or lora_B) share one shape, and their buffers' names."""

    attr: str  # "lora_A" or "lora_B"
    index: list[int]  # positions in the allocator's module list
    buffers: tuple[str, str, str]  # (Ibar, Ubar, index tensor) buffer names


class RankAllocator(nn.Module):
    def __init__(self, layers: dict[str, SVDLinear], config: AdaLoraConfig):
        super().__init__()
        self.config = config
        self.names = list(layers)
        self._layers = list(layers.values())  # plain list: not registered twice as submodules
        r = config.init_r
        if any(layer.r != r for layer in self._layers):
            raise ValueError(
                "rank allocation needs every adapter at init_r; these modules were "
                "already resized (load a non-resized checkpoint to keep training)."
            )
        n = len(self._layers)
        self.b0 = r * n
        self.bT = (
            config.target_total_rank
            if config.target_total_rank is not None
            else int(round(config.target_r * n))
        )
        if self.bT > self.b0:
            raise ValueError(
                f"final budget {self.bT} exceeds the initial budget {self.b0} "
                f"(init_r {r} x {n} modules)."
            )
        # one group per distinct lora_A shape and per distinct lora_B shape
        self._groups: list[_Group] = []
        for attr in ("lora_A", "lora_B"):
            by_shape: dict[tuple, list[int]] = {}
            for i, layer in enumerate(self._layers):
                by_shape.setdefault(tuple(getattr(layer, attr).shape), []).append(i)
            for gi, (shape, idx) in enumerate(sorted(by_shape.items())):
                names = (f"ipt_{attr}{gi}", f"unc_{attr}{gi}", f"idx_{attr}{gi}")
                self._groups.append(_Group(attr, idx, names))
                self.register_buffer(names[0], torch.zeros(len(idx), *shape, device=self._device))
                self.register_buffer(names[1], torch.zeros(len(idx), *shape, device=self._device))
                self.register_buffer(
                    names[2], torch.tensor(idx, device=self._device), persistent=False
                )
        self.register_buffer("ipt_E", torch.zeros(n, r, 1, device=self._device))
        self.register_buffer("unc_E", torch.zeros(n, r, 1, device=self._device))
        self.register_buffer("mask", torch.ones(n, r, dtype=torch.bool, device=self._device))
        # the last step processed, and its Python mirror (no device read per call)
        self.register_buffer("step", torch.tensor(-1, dtype=torch.long, device=self._device))
        self._step_value = -1
        self._step_seen = self._step_key()  # which tensor (and version) the mirror describes
        self._threshold: torch.Tensor | None = None
        self._ipt_fresh = False  # set by update_importance() in "pre_step" mode
        self.last_budget: int = self.b0

    @property
    def _device(self):
        return self._layers[0].lora_A.device if self._layers else torch.device("cpu")

    # ---------------------------------------------------------------- step mirror
    def _step_key(self) -> tuple:
        s = self.step
        try:
            version = s._version
        except RuntimeError:  # an inference-mode tensor has no version counter
            version = None
        return (id(s), s.data_ptr(), version)

    def last_step(self) -> int:
        """The last step processed. Read from the device only when ``step`` changed outside
        this class (load_state_dict, .to(device)); otherwise from a Python mirror."""
        key = self._step_key()
        if key != self._step_seen or key[2] is None:
            self._step_value = int(self.step)
            self._step_seen = self._step_key()
        return self._step_value

    def _set_step(self, t: int) -> None:
        self.step.fill_(t)
        self._step_value, self._step_seen = t, self._step_key()

    def _apply(self, fn, *args, **kwargs):
        # .to(device) / .cuda() / .float() copy ``step`` unchanged: keep the mirror valid
        valid = self._step_seen == self._step_key()
        out = super()._apply(fn, *args, **kwargs)
        if valid:
            self._step_seen = self._step_key()
        return out

    # ---------------------------------------------------------------- importance
    def _parts(self) -> list[tuple[str, list[int], torch.Tensor, torch.Tensor]]:
        """(parameter name, module indices, Ibar buffer, Ubar buffer) of every scored group."""
        parts = [
            (g.attr, g.index, getattr(self, g.buffers[0]), getattr(self, g.buffers[1]))
            for g in self._groups
        ]
        if not self.config.prune_lora:  # Prune LoRA's lambda is a fixed gate: no score of its own
            parts.append(("lora_E", list(range(len(self._layers))), self.ipt_E, self.unc_E))
        return parts

    def _stack(self, attr: str, index: list[int], grad: bool) -> torch.Tensor:
        ts = [getattr(self._layers[i], attr) for i in index]
        if grad:
            ts = [p.grad for p in ts]
            if any(t is None for t in ts):
                raise RuntimeError(
                    f"{attr} has no gradient: call update_and_allocate after loss.backward() and "
                    "optimizer.step() but before optimizer.zero_grad() (and update_importance "
                    "before optimizer.step())."
                )
        return torch.stack(ts)

    @torch.no_grad()
    def update_importance(self) -> None:
        """Fold this step's |w * g| into the EMAs: the weights and gradients of each shape group
        are stacked (one copy kernel each), then every arithmetic step is one foreach call over
        the groups (one fused kernel on CUDA, a loop over a handful of tensors on CPU)."""
        c = self.config
        if c.score == "magnitude":
            return
        parts = self._parts()
        cur = torch._foreach_mul(
            [self._stack(attr, index, False) for attr, index, *_ in parts],
            [self._stack(attr, index, True) for attr, index, *_ in parts],
        )
        torch._foreach_abs_(cur)  # I = |w * g|
        ipts, uncs = [p[2] for p in parts], [p[3] for p in parts]
        if c.score == "sensitivity":  # ablation: s = I, no smoothing, no uncertainty
            torch._foreach_copy_(ipts, cur)
            for unc in uncs:
                unc.fill_(1.0)
            return
        # PEFT's arithmetic, operation by operation (bit-identical scores):
        # Ibar = beta1 * Ibar + (1 - beta1) * I;  Ubar = beta2 * Ubar + (1 - beta2) * |I - Ibar|
        torch._foreach_mul_(ipts, c.beta1)
        torch._foreach_add_(ipts, torch._foreach_mul(cur, 1 - c.beta1))
        dev = torch._foreach_sub(cur, ipts)
        torch._foreach_abs_(dev)
        torch._foreach_mul_(dev, 1 - c.beta2)
        torch._foreach_mul_(uncs, c.beta2)
        torch._foreach_add_(uncs, dev)

    def reset_importance(self) -> None:
        bufs = [b for n, b in self.named_buffers() if n.startswith(("ipt_", "unc_"))]
        with torch.no_grad():
            torch._foreach_zero_(bufs)

    @torch.no_grad()
    def triplet_scores(self) -> torch.Tensor:
        """S (n_modules x r): the importance of every triplet."""
        if self.config.score == "magnitude":
            return torch.stack([layer.lora_E.detach().abs().view(-1) for layer in self._layers])
        n, r = self.mask.shape
        bufs = [[getattr(self, b) for b in g.buffers] for g in self._groups]
        # s = Ibar * Ubar of every group and of lambda: one foreach call
        s_all = torch._foreach_mul(
            [b[0] for b in bufs] + [self.ipt_E], [b[1] for b in bufs] + [self.unc_E]
        )
        mean_a = torch.empty(n, r, device=self.mask.device, dtype=s_all[-1].dtype)
        mean_b = torch.empty_like(mean_a)
        for g, (_, _, idx), s in zip(self._groups, bufs, s_all):
            if g.attr == "lora_A":
                mean_a.index_copy_(0, idx, s.mean(dim=2))  # (n_g, r, in) -> (n_g, r)
            else:
                mean_b.index_copy_(0, idx, s.mean(dim=1))  # (n_g, out, r) -> (n_g, r)
        return s_all[-1].view(n, r) + (mean_a + mean_b)  # PEFT's order: E + (A + B)

    # ---------------------------------------------------------------- masking
    @torch.no_grad()
    def mask_to_budget(self, budget: int) -> None:
        """Keep the ``budget`` most important triplets; zero lambda of the others.

        threshold = k-th smallest score, k = b0 - budget; S_i <= threshold is masked (ties
        too, as in both codebases). k = 0 masks nothing (neither codebase guards it).
        Everything stays on the device: k is a Python int, the threshold a 0-d tensor."""
        scores = self.triplet_scores()
        k = self.b0 - budget
        if k <= 0:
            self._threshold = None
            self.mask.fill_(True)
        else:
            self._threshold = torch.kthvalue(scores.flatten(), k).values
            torch.gt(scores, self._threshold, out=self.mask)
        self.apply_mask()

    @torch.no_grad()
    def apply_mask(self) -> None:
        gates = self.mask.unsqueeze(-1).to(self._layers[0].lora_E.dtype).unbind(0)
        torch._foreach_mul_([layer.lora_E for layer in self._layers], list(gates))

    def rank_pattern(self) -> RankPattern:
        return RankPattern(self.names, self.mask.clone())

    @property
    def threshold(self) -> float | None:
        """The last masking threshold (a device read: for logging, not for the hot path)."""
        return None if self._threshold is None else float(self._threshold)

    # ---------------------------------------------------------------- one step
    def update_and_allocate(self, t: int) -> tuple[int, RankPattern | None]:
        """One optimizer step's allocation. Returns (b(t), rank pattern if the mask changed).

        PEFT's phase rules ("fixed"): scores update while t < T - tfinal; at t = T - tfinal one
        mask to bT is forced and stored; after it the stored mask is re-applied every step (the
        optimizer would otherwise revive masked lambdas). "frozen_scores" (authors' code):
        masks on the schedule's steps and every final-phase step, from the frozen scores."""
        c = self.config
        if c.total_step is None:
            raise ValueError(
                "total_step is not set: pass AdaLoraConfig(total_step=...) or train "
                "with AdaLoraCallback, which takes it from the Trainer."
            )
        t = int(t)
        last = self.last_step()
        if t <= last:
            raise ValueError(
                f"update_and_allocate({t}) after step {last}: it must be "
                "called once per optimizer step with an increasing step."
            )
        final_start = c.total_step - c.tfinal
        if t < final_start:
            if c.score_weights == "pre_step":
                if not self._ipt_fresh and c.score != "magnitude":
                    raise RuntimeError(
                        "score_weights='pre_step' (the paper's variant) needs "
                        "model.update_importance() before optimizer.step() at every step; "
                        "AdaLoraCallback does this for the Trainer."
                    )
            else:
                self.update_importance()
        self._ipt_fresh = False
        self._set_step(t)
        b = budget_at(t, self.b0, self.bT, c.tinit, c.tfinal, c.total_step, c.deltaT, c.schedule)
        self.last_budget = b.budget
        changed = False
        if c.final_phase == "fixed" and t >= final_start:
            if t == final_start:
                self.mask_to_budget(b.budget)
                self.reset_importance()
                changed = True
            else:
                self.apply_mask()
        elif b.mask_now:
            self.mask_to_budget(b.budget)
            changed = True
        return b.budget, (self.rank_pattern() if changed else None)

    def pre_step_importance(self) -> None:
        """For score_weights='pre_step': score with the weights before optimizer.step()."""
        c = self.config
        if c.total_step is not None and self.last_step() + 1 >= c.total_step - c.tfinal:
            return  # scores are frozen from T - tfinal on
        self.update_importance()
        self._ipt_fresh = True
