"""Timing for the benchmarks: one timed iteration (wall clock, and CUDA events on a GPU), the
statistics (median, percentiles), per-round ratios, and the host syncs a call triggers.

Used by scripts/bench_step.py, scripts/bench_train.py (statistics) and scripts/device_check.py.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import torch


# ------------------------------------------------------------------------------ statistics
def med(xs):
    return statistics.median(xs) if xs else None


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(xs) -> dict:
    return {"median": med(xs), "p25": pct(xs, 0.25), "p75": pct(xs, 0.75), "n": len(xs)}


# ------------------------------------------------------------------------------ one iteration
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(v, batch, device, autocast_dtype) -> torch.Tensor:
    """What the benchmarks call the step of a models.Variant: forward (under autocast when
    ``autocast_dtype`` is set), backward, ``optimizer.step()``. Returns the loss."""
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = v.model(**batch).loss
    loss.backward()
    v.opt.step()
    return loss


def run_iter(v, batch, device, autocast_dtype, timed: bool):
    """One iteration of a models.Variant: step (forward + backward + optimizer.step()),
    then allocate (update_and_allocate), then zero_grad (untimed). Timed ones are recorded."""
    cuda = device.type == "cuda"
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else None
    v.t += 1
    sync(device)
    t0 = time.perf_counter()
    if cuda:
        ev[0].record()
    loss = train_step(v, batch, device, autocast_dtype)
    if cuda:
        ev[1].record()
    sync(device)
    t1 = time.perf_counter()
    if v.allocate is not None:
        v.allocate(v.t)
    if cuda:
        ev[2].record()
    sync(device)
    t2 = time.perf_counter()
    v.opt.zero_grad(set_to_none=True)
    if timed:
        v.step_ms.append((t1 - t0) * 1e3)
        v.alloc_ms.append((t2 - t1) * 1e3)
        if cuda:
            v.step_gpu_ms.append(ev[0].elapsed_time(ev[1]))
            v.alloc_gpu_ms.append(ev[1].elapsed_time(ev[2]))
    v.last_loss = float(loss.detach())


def profile_iter(v, batch, device, autocast_dtype, top: int = 25) -> dict:
    """One more iteration of ``v`` under ``torch.profiler`` (CPU activity), the step and the
    allocation profiled apart, so allocation sees the caches a real step leaves behind:
    {"step" | "allocate": {"aten_calls": total operator calls, "self_cpu_ms": their total,
    "ops": {name: {"calls", "self_cpu_us"}} for the ``top`` ops by self CPU time}}. The
    profiler adds its own cost per call: read the counts exactly, the times as a breakdown."""
    from torch.profiler import ProfilerActivity, profile

    def table(prof) -> dict:
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        ops = [e for e in rows if e.key.startswith("aten::")]
        return {
            "aten_calls": sum(e.count for e in ops),
            "self_cpu_ms": sum(e.self_cpu_time_total for e in rows) / 1e3,
            "ops": {
                e.key: {"calls": e.count, "self_cpu_us": round(e.self_cpu_time_total, 1)}
                for e in rows[:top]
            },
        }

    v.t += 1
    out = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(v, batch, device, autocast_dtype)
        sync(device)
    out["step"] = table(prof)
    if v.allocate is not None:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            v.allocate(v.t)
            sync(device)
        out["allocate"] = table(prof)
    v.opt.zero_grad(set_to_none=True)
    return out


def round_ratio(a, b, block: int, key, gpu: bool = False):
    """Median over rounds of (a's block median) / (b's block median), for key in step/alloc/total
    (wall clock, or CUDA-event time with gpu=True)."""

    def per_block(v):
        st, al = (v.step_gpu_ms, v.alloc_gpu_ms) if gpu else (v.step_ms, v.alloc_ms)
        xs = {"step": st, "alloc": al, "total": [x + y for x, y in zip(st, al)]}[key]
        return [med(xs[i : i + block]) for i in range(0, len(xs), block)]

    pa, pb = per_block(a), per_block(b)
    rs = [x / y for x, y in zip(pa, pb) if y]
    return med(rs), pct(rs, 0.25), pct(rs, 0.75)


# ------------------------------------------------------------------------------ host syncs
def sync_sites(fn) -> list[str]:
    """Run fn under torch.cuda.set_sync_debug_mode("warn"); the "file:line" of every
    device-to-host sync it triggered (CUDA only)."""
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return [f"{Path(w.filename).name}:{w.lineno}" for w in ws if "synchroniz" in str(w.message)]
