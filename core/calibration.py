"""The calibration pass: the CPU one request costs a server, measured before a run's cells on one
worker with no sleep (so its loop is saturated and every CPU second goes to requests), for each
server, worker class, endpoint and knobs the run has, at each number of connections per worker it
uses. The model's CPU terms read this cost: never the cell being predicted, which would be circular.

Its raw files are under calibration/<name>/ like any cell's; run.json keeps each cost.
"""

import math
from dataclasses import replace

from .cell import Cell
from .model import client_connections

CALIBRATION_S = 2  # seconds of load per calibration: thousands of requests at no sleep
CALIBRATION_WARMUP_S = 1  # unmeasured, as the cells' warm-up: the connect storm stays out of the cost
NO_SLEEP = -1.0  # a set sleep no cell has: the calibration's name always says "sleep0"


def connections_per_worker(cell: Cell) -> int:
    """The busiest worker's share of the connections wrk opens, with an even spread."""
    assert cell.connections is not None  # a closed loop
    return math.ceil(client_connections(cell.connections, cell.wrk_threads) / cell.workers)


def calibration_cell(cell: Cell) -> Cell | None:
    """The calibration whose cost the model uses for CELL: one worker of its server, worker class and
    knobs, no sleep, at CELL's connections per worker (None for the open loop, which has no waves, and
    for a path of your app, whose diagnosis reads its own cells at 1 connection instead)."""
    if cell.open_loop or cell.path:
        return None
    n = connections_per_worker(cell)
    calibration = replace(
        cell,
        name="",
        round=1,
        workers=1,
        threads=1,
        sleep=0.0,
        connections=n,
        wrk_threads=min(cell.wrk_threads, n),  # wrk wants a connection per thread at least
        duration=CALIBRATION_S,
        warmup=CALIBRATION_WARMUP_S,
    )
    return replace(calibration, name=calibration.directory_name(0, 1, NO_SLEEP, False).split("-", 1)[1])


def calibration_cells(cells: list[Cell]) -> list[Cell]:
    """Each calibration a run's cells need, once, in the order the cells first need them."""
    found: dict[str, Cell] = {}
    for cell in cells:
        calibration = calibration_cell(cell)
        if calibration is not None:
            # Its name is where its files go and what a verdict cites: one name, one configuration.
            assert found.setdefault(calibration.name, calibration) == calibration, calibration.name
    return list(found.values())
