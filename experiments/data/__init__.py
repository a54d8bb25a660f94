"""The runners' data: local files (or the HF Hub) -> lists of examples. The task table (labels,
metrics, preset rows) is experiments/tasks.py.

files           DataError (a file that cannot be used) and the one read wrapper
glue            GLUE: where a task's data comes from, loading a split (local TSVs or the Hub)
glue_tsv        GLUE's TSV files: read as GLUE's own loaders read them, with format checks
summarization   XSum, CNN/DailyMail: local JSON lines or the Hub; a run's train / eval split
"""
