"""The benchmark's runner: what ./benchmark.sh runs once .venv, wrk and httperf are there.

Starting and stopping processes (process.py), the PostgreSQL the db set needs (database.py), one
run (run.py), what a run records (record.py) and the command line (cli.py). What a cell, a
server, an endpoint or a set is comes from core/.
"""
