"""The parts of scripts/device_check.py (the entry point: the plan, the budget, the record).

proc          subprocesses: their environment, running one with a timeout; failed / skipped
environment   the ``environment`` entry: Python, torch, library versions, commit, GPU
core_tests    part ``tests``: the core tests on the device, pytest's junit XML parsed
probes        parts ``ops`` and ``sync``: aten ops counted, host syncs caught (in a subprocess)
bench         parts ``bench_*``: scripts/bench_step.py runs, the speed targets checked
glue          parts ``glue_single`` and ``glue_parallel``: real STS-B runs, model and data
summary       device_check.txt
"""
