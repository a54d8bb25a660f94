"""The report behind ``paper_tables.md`` (entry point: scripts/make_tables.py).

evidence       which files under a results folder are records; reading them strictly
records        Run: one typed record per run, parsed once; loading; sort keys
stats          grouping (pandas), mean ± std over seeds, best and shared learning rate
fmt            cell text and markdown tables
tables_glue    Table 1, every learning rate, adapter parameters at matched budgets
tables_other   Table 3, the ablations (Tables 4 / 5), schedule shape, sweeps
figures        which figures, drawing them, their section
converged      the converged protocol: arms, the selection rule, 5-seed cells, Welch verdicts
tables_converged   the converged section (it leads paper_tables.md)
figures_converged  its figures (conv_*.png)
wandb_import   runs from a W&B project
document       the whole file
"""
