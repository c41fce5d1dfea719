"""The concurrency set's findings: `def` against `async def` as the connections grow, and what
workers add to each."""

import statistics
from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.calibration import connections_per_worker

from ..records import Group
from ..runs import Run, Runs
from .base import Finding, Missing, Sentence
from .common import DEFAULT_THREAD_LIMIT, SAME, cells_where, find, pct, plain, run_spread


def beside(sweep: list[Group], g: Group, **where: object) -> Group:
    """The sweep's cell at G's connections, with WHERE's fields."""
    fields = plain(g.cell.workers, g.cell.threads, endpoint=g.cell.endpoint, connections=g.cell.connections)
    return find(sweep, **{**fields, **where})


@dataclass
class AsyncWins:
    pairs: list[tuple[int, Group, Group]]  # (connections, `async def`, `def`), one worker
    more: list[tuple[int, Group, Group]]  # above the threads
    within: list[tuple[int, Group, Group]]  # at or below them
    top: Group  # `async def` at the most connections
    sync: Group  # and `def` beside it


def async_wins_cells(runs: Runs) -> AsyncWins:
    sweep = runs["concurrency"].groups
    asyncs = sorted(cells_where(sweep, **plain(1, endpoint="async")), key=lambda g: g.cell.connections or 0)
    pairs = [(a.connections or 0, a, beside(sweep, a, endpoint="sync")) for a in asyncs]
    more = [(c, a, d) for c, a, d in pairs if c > DEFAULT_THREAD_LIMIT]
    within = [(c, a, d) for c, a, d in pairs if c <= DEFAULT_THREAD_LIMIT]
    if not more or not within:
        raise Missing(f"1-worker cells at and above {DEFAULT_THREAD_LIMIT} connections")
    return AsyncWins(pairs, more, within, pairs[-1][1], pairs[-1][2])


def async_wins_check(c: AsyncWins) -> bool:
    def apart_by_no_more_than_their_runs(a: Group, d: Group) -> bool:
        assert a.requests.median is not None and d.requests.median is not None
        return abs(a.requests.median - d.requests.median) <= max(run_spread(a), run_spread(d))

    return all(a.requests.above(d.requests) for _, a, d in c.more) and all(
        apart_by_no_more_than_their_runs(a, d) for _, a, d in c.within
    )


def async_wins_sentence(c: AsyncWins) -> Sentence:
    top, sync = c.top, c.sync
    return Sentence(
        f"`async def` answers more than `def` exactly where the client sends more than the {DEFAULT_THREAD_LIMIT} "
        "threads hold.",
        f"One worker, {top.cell.sleep:g} s sleep, req/s of `async def` vs `def` at each connection count "
        "of the sweep: "
        + "; ".join(f"{n}: {a.requests_per_sec.text(1)} vs {d.requests_per_sec.text(1)}" for n, a, d in c.pairs)
        + f". Above {DEFAULT_THREAD_LIMIT} connections every `async def` run answered more than every `def` run; at "
        f"{DEFAULT_THREAD_LIMIT} and below the two differ by no more than their runs (and the wave ending as wrk "
        f"stops) do. At {top.connections} connections `async def` was bound by {top.bound_by}; `def` by "
        f"{sync.bound_by}, {sync.never_answered.median:g} connections never answered in the run.",
        f"{top.connections} connections, {top.cell.sleep:g} s sleep: `async def` {top.requests_per_sec.text()} req/s, "
        "`def` "
        f"{sync.requests_per_sec.text(1)}",
    )


ASYNC_WINS = Finding("async_wins", ("concurrency",), async_wins_cells, async_wins_check, async_wins_sentence)


@dataclass
class WorkersForAsync:
    run: Run
    top: Group  # one worker, `async def`, at the most connections
    four: Group  # four workers beside it
    lower: list[tuple[Group, Group]]  # (one, four) at every smaller count


def workers_for_async_cells(runs: Runs) -> WorkersForAsync:
    run = runs["concurrency"]
    ones = sorted(cells_where(run.groups, **plain(1, endpoint="async")), key=lambda g: g.cell.connections or 0)
    if not ones:
        raise Missing("1-worker /async cells")
    return WorkersForAsync(
        run,
        ones[-1],
        beside(run.groups, ones[-1], workers=4),
        [(g, beside(run.groups, g, workers=4)) for g in ones[:-1]],
    )


def workers_for_async_check(c: WorkersForAsync) -> bool:
    return (
        c.top.cpu_bound == c.top.runs
        and c.four.requests_per_sec.above(c.top.requests_per_sec)
        and all(a.ok and b.ok and all(bound is Bound.CLIENT for bound in a.bounds + b.bounds) for a, b in c.lower)
    )


def workers_for_async_sentence(c: WorkersForAsync) -> Sentence:
    top, four = c.top, c.four
    return Sentence(
        "Workers help `async def` once a CPU is the limit, and not before.",
        f"At {top.connections} connections a CPU was the limit of one worker in {top.cpu_bound} of {top.runs} "
        f"runs (the summary's CPU verdict; the server used {pct(top.server_cpu_share)} of the machine) and it answered "
        f"{top.requests_per_sec.text()} req/s; 4 workers {four.requests_per_sec.text()}, more in every run "
        f"({four.bound_by}). These req/s are this machine's ({c.run.here()}, shared with wrk); the direction is what "
        f"every run shows. Below that both gave what the client allows, every cell bound by the client as the model "
        f"predicts: "
        + ", ".join(f"{a.connections} connections {a.requests.median:g} vs {b.requests.median:g}" for a, b in c.lower)
        + ".",
        f"{top.connections} connections, {top.cell.sleep:g} s sleep: 1 worker {top.requests_per_sec.text()} req/s, "
        "4 workers "
        f"{four.requests_per_sec.text()} ({c.run.environment['cpu_count']} cores here)",
    )


WORKERS_FOR_ASYNC = Finding(
    "workers_for_async", ("concurrency",), workers_for_async_cells, workers_for_async_check, workers_for_async_sentence
)


@dataclass
class WorkersForDef:
    pairs: list[tuple[int, Group, Group]]  # (connections, one worker, four workers), `def`
    ratios: dict[int, float]  # four over one, in requests answered
    busy: list[int]  # counts where every worker of every run took more connections than its threads
    idle: list[int]  # counts where the client sends no more than one worker's threads


def workers_for_def_cells(runs: Runs) -> WorkersForDef:
    sweep = runs["concurrency"].groups
    counts = sorted({g.cell.connections or 0 for g in cells_where(sweep, endpoint="sync")})
    ones = [find(sweep, **plain(1, endpoint="sync", connections=n)) for n in counts]  # Missing if one is not there
    pairs = [(g.connections or 0, g, beside(sweep, g, workers=4)) for g in ones]
    ratios = {n: (four.requests.median or 0) / (one.requests.median or 1) for n, one, four in pairs}
    busy = [n for n, _, four in pairs if all(s and min(s) > DEFAULT_THREAD_LIMIT for s in four.connections_per_worker)]
    return WorkersForDef(pairs, ratios, busy, [n for n, _, _ in pairs if n <= DEFAULT_THREAD_LIMIT])


def workers_for_def_check(c: WorkersForDef) -> bool:
    # Where every worker of every run took more connections than its threads, 4 workers must give 4x;
    # where the client sends no more than one worker's threads, the same as one worker.
    peaks = {n: four.peak_in_handler_max or 0 for n, _, four in c.pairs}
    return (
        all(one.ok and four.ok for _, one, four in c.pairs)
        and bool(c.busy)
        and bool(c.idle)
        and all(c.ratios[n] >= 4 * (1 - SAME) for n in c.busy)
        and all(abs(c.ratios[n] - 1) <= SAME for n in c.idle)
        and all(peak <= DEFAULT_THREAD_LIMIT for peak in peaks.values())
        and all(peaks[n] == DEFAULT_THREAD_LIMIT for n in c.busy)
    )


def workers_for_def_sentence(c: WorkersForDef) -> Sentence:
    counts = [n for n, _, _ in c.pairs]
    return Sentence(
        f"For `def`, each worker adds {DEFAULT_THREAD_LIMIT} thread slots: 4 workers give 4x once every worker "
        f"has more than {DEFAULT_THREAD_LIMIT} connections, and 1x while the client sends no more than "
        f"{DEFAULT_THREAD_LIMIT}.",
        "4 workers over 1, `/sync`, as the requests each answered: "
        + ", ".join(f"{n} connections {c.ratios[n]:.2f}x" for n in counts)
        + f". Every worker took more than {DEFAULT_THREAD_LIMIT} connections in every run at "
        + ", ".join(map(str, c.busy))
        + "; in between, the ratio is what the connections each worker took allow "
        "(every cell as the model fed with that spread predicts). Per worker, the most inside the handler was "
        + ", ".join(f"{four.peak_in_handler_max} at {n}" for n, _, four in c.pairs)
        + f": never above {DEFAULT_THREAD_LIMIT}, and {DEFAULT_THREAD_LIMIT} wherever every worker was busy.",
        "4 workers' requests over 1 worker's, `/sync`: "
        + ", ".join(f"{c.ratios[n]:.1f}x at {n}" for n in counts)
        + " connections",
    )


WORKERS_FOR_DEF = Finding(
    "workers_for_def", ("concurrency",), workers_for_def_cells, workers_for_def_check, workers_for_def_sentence
)


@dataclass
class BlockingAsync:
    cells: list[Group]  # every /async-blocking cell
    beside: list[tuple[Group, Group]]  # /sync and /async at each one's workers and connections
    fewer: list[Group]  # those where every run answered fewer than every run of both
    top: Group  # the most connections (and workers)
    one: Group  # one worker at as many connections


def blocking_async_cells(runs: Runs) -> BlockingAsync:
    sweep = runs["concurrency"].groups
    cells = cells_where(sweep, endpoint="async-blocking")
    if not cells:
        raise Missing("/async-blocking cells")
    pairs = [(beside(sweep, g, endpoint="sync"), beside(sweep, g, endpoint="async")) for g in cells]
    fewer = [g for g, pair in zip(cells, pairs) if all(o.requests.above(g.requests) for o in pair)]
    top = max(cells, key=lambda g: (g.connections or 0, g.cell.workers))
    return BlockingAsync(cells, pairs, fewer, top, beside(sweep, top, workers=1))


def blocking_async_check(c: BlockingAsync) -> bool:
    return all(g.ok and g.peak_in_handler_max == 1 for g in c.cells) and len(c.fewer) == len(c.cells)


def blocking_async_sentence(c: BlockingAsync) -> Sentence:
    top, one = c.top, c.one
    workers = " and ".join(str(w) for w in sorted({g.cell.workers for g in c.cells}))
    counts = ", ".join(str(n) for n in sorted({g.connections or 0 for g in c.cells}))
    return Sentence(
        "Blocking inside `async def` is the worst of both: fewer answers than `def` and than `async def`, at every "
        "connection count.",
        f"`time.sleep` in an `async def` holds the event loop, so a worker serves one request per sleep whatever the "
        f"connections: at {top.connections} connections {one.requests_per_sec.median:.2f} req/s with 1 worker, "
        f"{top.requests_per_sec.median:.2f} with {top.cell.workers}; the most inside the handler at once was 1 per "
        f"worker in {sum(g.peak_in_handler_max == 1 for g in c.cells)} of {len(c.cells)} cells. In {len(c.fewer)} of "
        f"{len(c.cells)} cells ({workers} workers; {counts} connections) every run answered fewer than every run of "
        "`/sync` and of `/async` beside it.",
        f"{one.requests_per_sec.median:.2f} req/s per worker ({top.cell.sleep:g} s sleep) at {top.connections} "
        "connections, "
        f"fewer than both in {len(c.fewer)} of {len(c.cells)} cells",
    )


BLOCKING_ASYNC = Finding(
    "blocking_async", ("concurrency",), blocking_async_cells, blocking_async_check, blocking_async_sentence
)

COST_GROWTH = 1.5  # "grows": the cost at the most connections per worker at least this times the few's
FEW_CONNECTIONS = 100  # "few" connections per worker: up to the seed's


@dataclass
class CostGrows:
    run: Run
    costs: dict[str, dict[int, float]]  # endpoint -> connections per worker -> calibrated s of CPU per request


def cost_grows_cells(runs: Runs) -> CostGrows:
    run = runs["concurrency"]
    costs: dict[str, dict[int, float]] = {}
    for r in run.rows:
        cost = r.verdict.calibrated_cpu_per_request_s
        if cost is not None and r.cell.endpoint in ("sync", "async"):
            costs.setdefault(r.cell.endpoint, {})[connections_per_worker(r.cell)] = cost
    if set(costs) != {"sync", "async"} or any(
        min(by) > FEW_CONNECTIONS or max(by) <= FEW_CONNECTIONS for by in costs.values()
    ):
        raise Missing(f"calibrations of /sync and /async at {FEW_CONNECTIONS} connections or fewer, and at more")
    return CostGrows(run, {e: dict(sorted(by.items())) for e, by in sorted(costs.items(), reverse=True)})


def growth(by: dict[int, float]) -> float:
    """The cost at the most connections over the median cost at few."""
    few = statistics.median(cost for n, cost in by.items() if n <= FEW_CONNECTIONS)
    return by[max(by)] / few if few else 0.0


def cost_grows_check(c: CostGrows) -> bool:
    return all(growth(by) >= COST_GROWTH for by in c.costs.values())


def cost_grows_sentence(c: CostGrows) -> Sentence:
    most = max(max(by) for by in c.costs.values())
    return Sentence(
        f"CPU per request grows with a worker's connections: at {most}, {COST_GROWTH:g}x or more what it is at "
        f"{FEW_CONNECTIONS} or fewer.",
        f"Calibrated on {c.run.here()} before the cells (one worker, no sleep, 2 s; raw files under the run's "
        "`calibration/`), us of server CPU per answered request by connections per worker: "
        + "; ".join(
            f"`/{e}` "
            + ", ".join(f"{n}: {1e6 * cost:.0f}" for n, cost in by.items())
            + f" ({growth(by):.1f}x the median at {FEW_CONNECTIONS} or fewer)"
            for e, by in c.costs.items()
        )
        + ". The model reads each cell's CPU from the calibration at its own connections per worker, never from a "
        "cost taken at another load.",
        ", ".join(f"`/{e}` {growth(by):.1f}x" for e, by in c.costs.items()) + f" at {most} connections per worker",
    )


COST_GROWS = Finding("cost_grows", ("concurrency",), cost_grows_cells, cost_grows_check, cost_grows_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [ASYNC_WINS, WORKERS_FOR_ASYNC, WORKERS_FOR_DEF, BLOCKING_ASYNC, COST_GROWS]
