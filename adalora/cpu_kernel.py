"""The importance update in one pass over memory, for adapters on the CPU (opt-in).

The eager update (``RankAllocator.update_importance``) matches PEFT's arithmetic one operation
per kernel: about 25 passes over the N adapter entries. After a training step the state is out
of cache, so that is most of ``update_and_allocate``'s time. This C loop reads every weight and
gradient where it lies (no gather), and the two EMAs once, and writes Ibar, Ubar and the score
s = Ibar * Ubar: 7 passes. It does the same float32 operations in the same order, each rounded
(``-ffp-contract=off``: no fused multiply-add), so the state, scores and masks stay bit-identical
to PEFT's (tests/test_cpu_kernel.py).

It is compiled at first use with the system's C compiler (``$CC``, else ``cc``) into
``$ADALORA_CACHE`` (default ``~/.cache/adalora``), keyed by a hash of the source and flags; a
missing compiler is an error that says so, never a silent switch back to the eager path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* Per entry, tensor k holding n[k] weights w and gradients g, its state at E, U, S + off:
     I = |w g|;  E = b1 E + c1 I;  U = b2 U + c2 |I - E|;  S = E U
   (c1 = 1 - beta1, c2 = 1 - beta2, rounded to float by the caller, as torch does). */
void importance_update(int64_t n_tensors, float *const *w, float *const *g, const int64_t *n,
                       float *E, float *U, float *S, float b1, float c1, float b2, float c2) {
    int64_t off = 0;
    for (int64_t k = 0; k < n_tensors; ++k) {
        const float *restrict wk = w[k], *restrict gk = g[k];
        float *restrict e = E + off, *restrict u = U + off, *restrict s = S + off;
        for (int64_t i = 0; i < n[k]; ++i) {
            float I = fabsf(wk[i] * gk[i]);
            float ei = b1 * e[i] + c1 * I;
            float ui = b2 * u[i] + c2 * fabsf(I - ei);
            e[i] = ei;
            u[i] = ui;
            s[i] = ei * ui;
        }
        off += n[k];
    }
}
"""
FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC"]

_lib: ctypes.CDLL | None = None


def _compile() -> Path:
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256("\n".join([SOURCE, cc, *FLAGS, platform.machine()]).encode()).hexdigest()
    cache = Path(os.environ.get("ADALORA_CACHE", Path.home() / ".cache" / "adalora"))
    lib = cache / f"importance_{key[:16]}.so"
    if lib.is_file():
        return lib
    if shutil.which(cc) is None:
        raise RuntimeError(
            f"the fused CPU importance update needs a C compiler; {cc!r} was not found. "
            "Install one (gcc or clang; or set CC), or leave the eager update on."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src, out = Path(tmp) / "importance.c", Path(tmp) / lib.name
        src.write_text(SOURCE)
        run = subprocess.run([cc, *FLAGS, str(src), "-o", str(out), "-lm"], capture_output=True)
        if run.returncode != 0:
            raise RuntimeError(
                f"compiling the fused CPU importance update with {cc!r} failed:\n"
                f"{run.stderr.decode(errors='replace')}\nFix the compiler (or set CC), or "
                "leave the eager update on."
            )
        os.replace(out, lib)  # atomic: a concurrent process sees the whole library or none
    return lib


def load() -> ctypes.CDLL:
    """The compiled kernel (compiled once per machine, loaded once per process)."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL(str(_compile()))
        f = lib.importance_update
        p = ctypes.c_void_p
        f.argtypes = [ctypes.c_int64, p, p, p, p, p, p] + [ctypes.c_float] * 4
        f.restype = None
        _lib = lib
    return _lib


def importance_update(
    weights: list[torch.Tensor],
    grads: list[torch.Tensor],
    ipt: torch.Tensor,
    unc: torch.Tensor,
    score: torch.Tensor,
    beta1: float,
    beta2: float,
) -> None:
    """Fold |w * g| of every (weight, gradient) pair, in order, into ``ipt`` / ``unc`` (N,) and
    write ``score`` (N,) = ipt * unc. All float32, contiguous, on the CPU; N = the total size
    of ``weights``. The caller checks that (the kernel writes through raw pointers)."""
    k = len(weights)
    ptrs = ctypes.c_void_p * k
    f = load().importance_update
    f(
        k,
        ptrs(*[w.data_ptr() for w in weights]),
        ptrs(*[g.data_ptr() for g in grads]),
        (ctypes.c_int64 * k)(*[w.numel() for w in weights]),
        ipt.data_ptr(),
        unc.data_ptr(),
        score.data_ptr(),
        beta1,
        1 - beta1,
        beta2,
        1 - beta2,
    )
