"""device_check.txt: a short summary of device_check.json."""

from __future__ import annotations


def summary_text(rec: dict) -> str:
    lines = [
        f"device_check {rec['status'].upper()} on {rec['device']}"
        f"{' (quick)' if rec['quick'] else ''} in {rec['wall_s']:.0f} s, {rec['created']}",
    ]
    env = rec.get("environment", {})
    gpu = env.get("gpu", {}).get("name", "no GPU")
    mods = env.get("modules", {})
    lines.append(
        f"  {gpu}; torch {env.get('torch')}, transformers {mods.get('transformers')}, "
        f"peft {mods.get('peft')}, commit {str(env.get('git_commit'))[:10]}"
    )
    for name, p in rec["parts"].items():
        st = p.get("status", "?")
        extra = p.get("reason") or p.get("error") or ""
        if name == "tests" and "counts" in p:
            c = p["counts"]
            extra = f"{p['passed']} passed, {c['failures']} failed, {c['errors']} errors, "
            extra += f"{c['skipped']} skipped"
        elif name.startswith("bench_") and st == "passed":
            m = p["medians_ms"]
            extra = (
                "  ".join(f"{k} {v.get('total_ms_median', 0):.1f}ms" for k, v in m.items())
                + f"  (alloc ours {m.get('ours_adalora', {}).get('alloc_ms_median', 0):.3f}ms)"
            )
        elif name == "glue_single" and st == "passed":
            extra = (
                f"{p['wall_s']:.0f} s, {p['run'].get('main_metric')} {p['run'].get('main_final')}"
            )
        elif name == "glue_parallel" and st == "passed":
            extra = (
                f"{p['n']} runs in {p['wall_s']:.0f} s (x{p.get('throughput_vs_single')} vs one)"
            )
        elif name == "ops" and st == "passed":
            v = p.get("variants", {})
            a = v.get("ours_adalora", {}).get("update_and_allocate", {})
            extra = (
                f"update_and_allocate {a.get('aten_ops')} aten ops ({a.get('non_view_ops')} "
                f"non-view); step ops "
                + ", ".join(f"{k} {x['step']['aten_ops']}" for k, x in v.items())
            )
        lines.append(f"  {name:22s} {st:8s} {extra}"[:400])
    if rec.get("targets"):
        lines.append(
            "  targets (GPU setting):"
            if rec["device"].startswith("cuda")
            else "  targets (tiny CPU run, a few iterations: NOT the GPU setting, plumbing only):"
        )
        for k, t in rec["targets"].items():
            lines.append(
                f"    {k:50s} {t['value']:<8} {t['target']:8s} {'met' if t['met'] else 'MISSED'}"
            )
    return "\n".join(lines) + "\n"
