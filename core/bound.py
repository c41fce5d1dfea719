"""Bound: what set a cell's count. The model names the limit it predicts; the verdict may replace
it with what was measured instead (a CPU, a killed worker). Findings select by it, never by the
text the tables print beside it."""

from enum import Enum


class Bound(Enum):
    # Predicted by the model from the limits alone
    CLIENT = "the client's connections"
    THREADS = "anyio's thread limiter"
    HTTP_POOL = "the HTTP client's pool"
    DB_POOL = "the database pool"
    BLOCKED_LOOP = "a blocked event loop"
    BACKPRESSURE = "the server's own backpressure"
    CONNECTIONS = "no limit but the connections"
    SPREAD = "the connection spread over the workers"
    POSTGRES = "PostgreSQL's connection slots"
    BELOW_CAPACITY = "an arrival rate below capacity"
    # Measured instead of predicted
    CPU = "a CPU"
    WORKER_KILLED = "a worker killed by gunicorn's heartbeat"
    RESTARTED = "workers restarted mid-cell"
    NEW_DB_CONNECTIONS = "new database connections in the window"
    STARVED = "threads and a pool each waiting on the other"
    YOUR_APP = "a path of your app (its diagnosis says what limits it)"
    UNEXPLAINED = "unexplained"
