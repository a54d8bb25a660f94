"""The benchmarks' parts (entry points: scripts/bench_step.py, scripts/bench_train.py).

models         bench_step's models, batches and variants (also scripts/device_check.py)
timing         one timed iteration, the statistics, per-round ratios, host syncs
train_data     bench_train's model and data: the GLUE runner's own pieces and batches
train_timing   bench_train's timing: one training configuration and its timed steps
"""
