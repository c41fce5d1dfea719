"""The definitions everything else reads, each written once: a cell's fields (cell.py), the
endpoints and their per-worker limits (endpoints.py), the servers' command lines (servers.py),
the knobs (knobs.py), the experiment sets (sets.py), the model that predicts a cell (model.py)
and the name of every file in a run directory (files.py).

Imports go one way: runner -> report -> core. Nothing here imports runner/ or report/.
"""
