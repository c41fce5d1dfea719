"""The benchmark's runner: what ./benchmark.sh runs once .venv, wrk and httperf are there.

One place for each thing: a cell's fields (cell.py), the servers' command lines (servers.py),
the endpoints and their per-worker limits (endpoints.py), the experiment sets (sets.py), the
knobs (knobs.py), starting and stopping processes (process.py), one run (run.py), what a run
records (record.py) and the command line (cli.py).
"""
