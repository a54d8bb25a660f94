"""Grids of glue.py runs: what scripts/reproduce.py and scripts/ablate.py share.

command   one builder for a glue.py command; glue.py's own check of one, in-process
pool      runs on this machine (CPU slots, K runs per GPU) and the re-planning grid loop
options   the launcher flags (--launcher local|slurm|slurm-local, ...) and their checks
slurm     runs on SLURM through submitit: packs of runs as job arrays, requeued on preemption
launch    the launcher the flags ask for, and the SLURM dry run
"""
