"""Importance-scored rank allocation over all SVD adapters at once.

State (registered buffers, so ``state_dict()`` checkpoints it and a resumed run continues
identically): sensitivity EMA ``Ibar`` and uncertainty EMA ``Ubar`` of every adapter entry, the
current keep-mask (n_modules x r_init), and the last step processed. Ibar and Ubar of all
adapters are one (2, N) tensor, N the number of adapter entries; the buffers ``ipt_*`` /
``unc_*`` are its views, one per shape group: ``lora_A<k>`` (n_g, r, in), ``lora_B<k>``
(n_g, out, r), ``E`` (n, r, 1).

Speed: a step gathers the weights and gradients into two flat work vectors (one stack per
shape group each), then runs each arithmetic step of the EMAs as one kernel over all N entries,
one product and one row / column mean per group for the scores, one k-th value and one compare
for the mask, and one multiply of the lambdas (a ``torch._foreach_mul_``: one kernel on CUDA,
a small one per adapter on the CPU). So the work is about 20 kernels plus a few per shape
group, whatever the number of adapters, instead of PEFT's loop of small ops over every
parameter; on the CPU it is bound by memory traffic (about 25 passes over N floats at a masking
step). ``update_and_allocate`` never reads a tensor back to the host: the step counter has a
Python mirror, and the threshold and rank pattern stay on the device until a caller asks for
them (``threshold``, ``RankPattern``). Per entry w with gradient g (the paper's smoothed
sensitivity and uncertainty; PEFT 0.21 RankAllocator):

    I    = |w * g|
    Ibar = beta1 * Ibar + (1 - beta1) * I
    Ubar = beta2 * Ubar + (1 - beta2) * |I - Ibar|
    s    = Ibar * Ubar
    S_i  = s(lambda_i) + mean_j s(Q_ij) + mean_k s(P_ki)       (triplet score)

The arithmetic follows PEFT's operation order exactly (one operation per kernel: no fused
multiply-add), so scores and masks match bit for bit.
"""

from __future__ import annotations

import math
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
    """The adapter matrices of one kind and shape, stacked: a slice of the flat state."""

    attr: str  # "lora_A", "lora_B" or "lora_E"
    index: list[int]  # positions in the allocator's module list
    shape: tuple[int, ...]  # (n_g, *parameter shape)
    start: int  # [start, stop) in the flat state
    stop: int
    name: str  # buffer name suffix: ipt_<name>, unc_<name>


class _Work(NamedTuple):
    """Work tensors of one device and dtype (the adapters'), reused at every step."""

    a: torch.Tensor  # (N,): |w * g|, then s = Ibar * Ubar
    b: torch.Tensor  # (N,): gradients, then intermediate terms
    a_views: list[torch.Tensor]  # a's slice of each group, shaped like the group
    b_views: list[torch.Tensor]
    gate: torch.Tensor  # (n, r, 1): the keep-mask in lambda's dtype
    gates: tuple[torch.Tensor, ...]  # its n rows (r, 1), one per adapter's lambda


class RankAllocator(nn.Module):
    def __init__(self, layers: dict[str, SVDLinear], config: AdaLoraConfig):
        super().__init__()
        self.config = config
        self.names = list(layers)
        self._layers = list(layers.values())  # plain list: not registered twice as submodules
        # each layer's parameter dict, read at every step: a dict lookup costs a tenth of
        # nn.Module.__getattr__ (which was 60 us of Python per step for MiniLM's 108
        # parameters), and the live dict sees any parameter a load puts in the layer
        self._params = [layer._parameters for layer in self._layers]
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
        # The flat layout: one group per distinct lora_A shape, then per distinct lora_B shape,
        # then every lambda (n, r, 1); lambda last so that Prune LoRA scores a prefix.
        self._groups: list[_Group] = []
        offset = 0
        for attr in ("lora_A", "lora_B"):
            by_shape: dict[tuple, list[int]] = {}
            for i, layer in enumerate(self._layers):
                by_shape.setdefault(tuple(getattr(layer, attr).shape), []).append(i)
            for gi, (shape, idx) in enumerate(sorted(by_shape.items())):
                size = len(idx) * math.prod(shape)
                g = _Group(attr, idx, (len(idx), *shape), offset, offset + size, f"{attr}{gi}")
                self._groups.append(g)
                offset += size
        lam = _Group("lora_E", list(range(n)), (n, r, 1), offset, offset + n * r, "E")
        self._groups.append(lam)
        # scored entries: all but lambda for Prune LoRA (its lambda is a fixed 0/1 gate)
        self._n_scored = offset if config.prune_lora else offset + n * r
        self._state_names = [f"{k}_{g.name}" for g in self._groups for k in ("ipt", "unc")]
        self._bind(torch.zeros(2, offset + n * r, device=self._device))
        # row of module i in the group-ordered stack of lora_A (lora_B) row / column means
        for attr in ("lora_A", "lora_B"):
            order = [i for g in self._groups if g.attr == attr for i in g.index]
            inverse = torch.tensor(order, device=self._device).argsort()
            self.register_buffer(f"order_{attr}", inverse, persistent=False)
        self.register_buffer("mask", torch.ones(n, r, dtype=torch.bool, device=self._device))
        # the last step processed, and its Python mirror (no device read per call)
        self.register_buffer("step", torch.tensor(-1, dtype=torch.long, device=self._device))
        self._step_value = -1
        self._step_seen = self._step_key()  # which tensor (and version) the mirror describes
        self._threshold: torch.Tensor | None = None
        self._ipt_fresh = False  # set by update_importance() in "pre_step" mode
        self._work: _Work | None = None
        self.last_budget: int = self.b0

    @property
    def _device(self):
        return self._layers[0].lora_A.device if self._layers else torch.device("cpu")

    # ---------------------------------------------------------------- flat state
    def _bind(self, state: torch.Tensor) -> None:
        """Make ``state`` (2 x N: Ibar, Ubar) the storage of the ipt_* / unc_* buffers, which
        become its views: ipt_lora_A<k> (n_g, r, in), ipt_lora_B<k> (n_g, out, r), ipt_E
        (n, r, 1), as registered buffers under the names checkpoints have always used."""
        self._state = state
        views = zip(self._views(state[0]), self._views(state[1]))
        for g, pair in zip(self._groups, views):
            for kind, view in zip(("ipt", "unc"), pair):
                if f"{kind}_{g.name}" in self._buffers:
                    self._buffers[f"{kind}_{g.name}"] = view
                else:
                    self.register_buffer(f"{kind}_{g.name}", view)

    def _flat(self) -> torch.Tensor:
        """The (2, N) state behind the buffers. Something that replaces buffers (``.to()``,
        ``load_state_dict(assign=True)``, a deep copy) leaves them separate tensors: they are
        then copied into a new flat state once (a check of a few pointers per call)."""
        state = self._state
        if all(self._buffers[k]._base is state for k in self._state_names):
            return state
        rows = [
            torch.cat([self._buffers[f"{kind}_{g.name}"].reshape(-1) for g in self._groups])
            for kind in ("ipt", "unc")
        ]
        self._bind(torch.stack(rows))
        return self._state

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # copies, not views of one storage: safetensors refuses tensors that share memory
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for k in self._state_names:
            destination[prefix + k] = destination[prefix + k].detach().clone()

    def _work_for(self, state: torch.Tensor) -> _Work:
        """The work tensors (see ``_Work``), kept between calls: no allocation per step."""
        dtype = self._params[0]["lora_A"].dtype
        w = self._work
        if w is None or w.a.device != state.device or w.a.dtype != dtype:
            a = torch.empty(state.shape[1], device=state.device, dtype=dtype)
            b = torch.empty_like(a)
            gate = torch.empty(*self.mask.shape, 1, device=state.device, dtype=dtype)
            w = self._work = _Work(a, b, self._views(a), self._views(b), gate, gate.unbind(0))
        return w

    def _views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a flat vector of N entries, one per group, shaped like the group."""
        return [flat[g.start : g.stop].view(g.shape) for g in self._groups]

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
        self._work = None  # on the old device or dtype: made again when next needed
        self._flat()  # the converted buffers are separate tensors: one state again, now
        return out

    # ---------------------------------------------------------------- importance
    def _gather(self, g: _Group, w_out: torch.Tensor, g_out: torch.Tensor) -> None:
        """Stack group ``g``'s weights into ``w_out`` and their gradients into ``g_out``."""
        ws = [self._params[i][g.attr] for i in g.index]
        grads = [w.grad for w in ws]
        if any(t is None for t in grads):
            raise RuntimeError(
                f"{g.attr} has no gradient: call update_and_allocate after loss.backward() and "
                "optimizer.step() but before optimizer.zero_grad() (and update_importance "
                "before optimizer.step())."
            )
        torch.stack(ws, out=w_out)
        torch.stack(grads, out=g_out)

    @torch.no_grad()
    def update_importance(self) -> None:
        """Fold this step's |w * g| into the EMAs. Every weight and gradient is gathered into
        two flat work vectors (one stack per shape group each), then each arithmetic step is
        one kernel over all scored entries at once, whatever the number of adapters."""
        c = self.config
        if c.score == "magnitude":
            return
        state = self._flat()
        n = self._n_scored
        w = self._work_for(state)
        for g, w_view, g_view in zip(self._groups, w.a_views, w.b_views):
            if g.start < n:
                self._gather(g, w_view, g_view)
        cur, tmp = w.a[:n], w.b[:n]
        ipt, unc = state[0, :n], state[1, :n]
        cur.mul_(tmp).abs_()  # I = |w * g|
        if c.score == "sensitivity":  # ablation: s = I, no smoothing, no uncertainty
            ipt.copy_(cur)
            unc.fill_(1.0)
            return
        # PEFT's arithmetic, operation by operation (bit-identical scores):
        # Ibar = beta1 * Ibar + (1 - beta1) * I;  Ubar = beta2 * Ubar + (1 - beta2) * |I - Ibar|
        ipt.mul_(c.beta1)
        ipt.add_(torch.mul(cur, 1 - c.beta1, out=tmp))
        dev = torch.sub(cur, ipt, out=tmp) if tmp.dtype == ipt.dtype else cur - ipt
        dev.abs_().mul_(1 - c.beta2)
        unc.mul_(c.beta2)
        unc.add_(dev)

    def reset_importance(self) -> None:
        with torch.no_grad():
            self._flat().zero_()

    @torch.no_grad()
    def triplet_scores(self) -> torch.Tensor:
        """S (n_modules x r): the importance of every triplet."""
        if self.config.score == "magnitude":
            return torch.stack([layer.lora_E.detach().abs().view(-1) for layer in self._layers])
        state = self._flat()
        w = self._work_for(state)
        s, views = w.a, w.a_views
        if s.dtype == state.dtype:
            torch.mul(state[0], state[1], out=s)  # s = Ibar * Ubar, every entry at once
        else:
            s = state[0] * state[1]
            views = self._views(s)
        means = {"lora_A": [], "lora_B": []}
        for g, s_g in zip(self._groups, views):
            if g.attr == "lora_A":
                means[g.attr].append(s_g.mean(dim=2))  # (n_g, r, in) -> (n_g, r)
            elif g.attr == "lora_B":
                means[g.attr].append(s_g.mean(dim=1))  # (n_g, out, r) -> (n_g, r)
        # group order -> module order
        mean_a = torch.cat(means["lora_A"]).index_select(0, self.order_lora_A)
        mean_b = torch.cat(means["lora_B"]).index_select(0, self.order_lora_B)
        n, r = self.mask.shape
        s_e = views[-1].view(n, r)
        return s_e + (mean_a + mean_b)  # PEFT's order: E + (A + B)

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
        """lambda *= mask, in place (one small kernel per adapter on the CPU, one on CUDA)."""
        w = self._work_for(self._flat())
        w.gate.copy_(self.mask.unsqueeze(-1))  # 0/1 in lambda's dtype; w.gates are its rows
        torch._foreach_mul_([p["lora_E"] for p in self._params], w.gates)

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
