"""Parts ``ops`` and ``sync``: probes run in a subprocess of scripts/device_check.py (its hidden
--_probe option) that write their result as JSON.

    ops    aten ops per update_and_allocate and per training step (ours and PEFT's LoRA /
           AdaLoRA), counted with a TorchDispatchMode; sync-prone ops counted
    sync   CUDA only: torch.cuda.set_sync_debug_mode around update_and_allocate on masking
           steps ("error": must not sync) and around a training step (ours must add no sync to
           the wrapped model's own)
"""

from __future__ import annotations

import json
import sys
import traceback

from experiments.results import write_json_atomic
from scripts.device.proc import DEVICE_CHECK, child_env, failed, run_cmd, skipped

VIEW_OPS = {
    "view", "_unsafe_view", "unsqueeze", "squeeze", "unbind", "select", "slice", "transpose",
    "t", "expand", "permute", "as_strided", "alias", "detach", "split", "split_with_sizes",
    "chunk", "empty", "empty_like", "empty_strided", "new_empty", "lift_fresh", "_reshape_alias",
    "reshape", "numpy_T", "_to_copy_noop", "clone_noop",
}  # fmt: skip
SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "is_nonzero", "equal"}
SYNC_MODEL, SYNC_BATCH = "deberta-v3-base", (8, 128)  # the sync probe's model and batch


def part_probe(ctx, which: str) -> dict:
    if which == "sync" and not ctx.cuda:
        return skipped("no CUDA: the CPU equivalent is tests/test_allocator.py's meta-device test")
    out = ctx.work / f"probe_{which}.json"
    cmd = [sys.executable, str(DEVICE_CHECK), "--_probe", which]
    cmd += ["--device", ctx.device, "--out", str(ctx.work), "--_probe-json", str(out)]
    if ctx.quick:
        cmd.append("--quick")
    r = run_cmd(cmd, ctx.timeout(180), child_env(ctx.device, 1 if not ctx.cuda else None),
                ctx.log(which))  # fmt: skip
    if not out.exists():
        return failed("the probe wrote no result" + (" (timed out)" if r["timed_out"] else ""), **r)
    res = json.loads(out.read_text())
    res.update(wall_s=r["wall_s"], rc=r["rc"])
    if r["rc"] != 0 and res.get("status") == "passed":
        res.update(status="failed", error=f"probe exited with {r['rc']}", stderr=r["stderr_tail"])
    return res


def count_mode(counter: dict):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            counter[name] = counter.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    return Count()


def summarise_ops(counter: dict) -> dict:
    return {
        "aten_ops": sum(counter.values()),
        "non_view_ops": sum(v for k, v in counter.items() if k not in VIEW_OPS),
        "sync_ops": {k: v for k, v in counter.items() if k in SYNC_OPS},
        "by_op": dict(sorted(counter.items(), key=lambda kv: -kv[1])),
    }


def bench_variants(model: str, device, seq_len: int, names: str):
    from types import SimpleNamespace

    import torch

    from scripts.bench.models import build_base, make_variants

    args = SimpleNamespace(
        init_r=12, target_r=8, lora_alpha=32, orth_reg_weight=0.1, tinit=1, total_step=1000,
        variants=names.split(","), seed=0, lr=1e-3,
    )  # fmt: skip
    torch.manual_seed(0)
    base, vocab, eos = build_base(model, seq_len, device)
    variants, targets = make_variants(base, args, device)
    return variants, targets, vocab, eos


def probe_ops(device: str, quick: bool) -> dict:
    """aten ops per training step (forward + backward + AdamW.step) and per
    update_and_allocate (a masking step), counted on ``device``."""
    import torch

    from scripts.bench.models import make_batches
    from scripts.bench.timing import run_iter, train_step

    dev = torch.device(device)
    model = "deberta-v3-base" if dev.type == "cuda" else "tiny-deberta-v3-base"
    names = "ours_lora,ours_adalora" if quick else "ours_lora,ours_adalora,peft_adalora,peft_lora"
    variants, targets, vocab, eos = bench_variants(model, dev, 16, names)
    batches = make_batches(4, 2, 16, vocab, eos, dev, 2)
    res = {"model": model, "n_adapted_matrices": len(targets), "batch": "2x16", "variants": {}}
    for name, v in variants.items():
        for i in range(3):  # warm-up (lazy optimizer state) and past tinit = 1
            run_iter(v, batches[i % 4], dev, None, timed=False)
        step_ops, alloc_ops = {}, {}
        v.t += 1
        with count_mode(step_ops):
            train_step(v, batches[v.t % 4], dev, None)
        if v.allocate is not None:
            with count_mode(alloc_ops):
                v.allocate(v.t)
        v.opt.zero_grad(set_to_none=True)
        res["variants"][name] = {"step": summarise_ops(step_ops)}
        if v.allocate is not None:
            res["variants"][name]["update_and_allocate"] = summarise_ops(alloc_ops)
    ours = res["variants"].get("ours_adalora", {}).get("update_and_allocate", {})
    bad = ours.get("sync_ops")
    res["status"] = "failed" if bad else "passed"
    if bad:
        res["error"] = f"update_and_allocate dispatched host-read ops {bad}"
    return res


def probe_sync(device: str, quick: bool) -> dict:
    """CUDA: no device-to-host sync in update_and_allocate (masking steps, "error" mode); in a
    training step, the sync sites of ours vs the plain model's (and PEFT's, "warn" mode)."""
    from collections import Counter

    import torch

    from scripts.bench.models import make_batches
    from scripts.bench.timing import run_iter, sync_sites, train_step

    dev = torch.device(device)
    model, (bs, seq) = SYNC_MODEL, SYNC_BATCH
    variants, targets, vocab, eos = bench_variants(
        model, dev, seq, "ours_adalora,ours_lora,peft_adalora,full"
    )
    batches = make_batches(4, bs, seq, vocab, eos, dev, 2)
    res = {"model": model, "batch": f"{bs}x{seq}", "checks": {}}

    for v in variants.values():
        for i in range(3):
            run_iter(v, batches[i % 4], dev, None, timed=False)

    def step_of(v, autocast):
        def run():
            v.t += 1
            train_step(v, batches[v.t % 4], dev, torch.bfloat16 if autocast else None)

        return run

    for prec in ("fp32", "bf16"):
        sites = {n: sync_sites(step_of(v, prec == "bf16")) for n, v in variants.items()}
        extra = Counter(sites["ours_adalora"]) - Counter(sites["full"])
        res["checks"][f"train_step_{prec}"] = {
            "sync_sites": sites,
            "ours_adalora_extra_over_plain_model": dict(extra),
            "ok": not extra,
        }
        for v in variants.values():
            if v.allocate is not None:  # keep the step sequence: allocate, then zero_grad
                torch.cuda.synchronize()
                if v.name == "ours_adalora":
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        err = None
                        _, pattern = v.allocate(v.t)
                    except RuntimeError as e:
                        err = str(e).splitlines()[0]
                        pattern = None
                        tb = traceback.format_exc(limit=-4)
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                    res["checks"][f"update_and_allocate_{prec}"] = {
                        "step": v.t,
                        "masked": pattern is not None,
                        "ok": err is None and pattern is not None,
                        **({"error": err, "traceback": tb} if err else {}),
                    }
                else:
                    res["checks"][f"peft_update_and_allocate_{prec}_sync_sites"] = sync_sites(
                        lambda v=v: v.allocate(v.t)
                    )
            v.opt.zero_grad(set_to_none=True)
    ok = all(c["ok"] for c in res["checks"].values() if isinstance(c, dict) and "ok" in c)
    res["status"] = "passed" if ok else "failed"
    if not ok:
        res["error"] = "a device-to-host sync in our hot path (see checks)"
    return res


def run_probe(args) -> int:
    """The probe subprocess (device_check.py --_probe NAME): run it, write its result."""
    res = {"status": "failed"}
    try:
        fn = {"ops": probe_ops, "sync": probe_sync}[args._probe]
        res = fn(args.device, args.quick)
    except Exception as e:  # noqa: BLE001 - recorded for the parent
        res = failed(f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=-8))
    write_json_atomic(args.probe_json, res, overwrite=True, sort_keys=False)
    return 0
