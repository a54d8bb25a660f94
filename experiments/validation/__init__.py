"""Bad input, rejected before anything runs: one line, exit status 2, nothing written.

checks   the runners' checks by stage (flags, model, schedule) and ``blame`` (an error -> its flag)
base     BadInput, a config field's flag, the one-line message (what every check shares)
inputs   summarisation lengths and data sizes, --rank-pattern-from
model    checks that need the loaded model: lengths, --target-modules entries, adapter ranks
"""
