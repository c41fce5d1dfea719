"""Turn a run directory's raw files into a summary that says why each number is what it is.

Stages, one module each: parse (the raw files), model (the predictions), summary (verdicts and
tables), plot, claims (the README's findings, each checked against its data), readme (the
README's generated sections). What a run records is the runner's (runner/record.py).
Commands: python -m report --help.
"""
