"""The README's findings, each a claim with the figures it rests on and a test of those figures.

A claim that its data support is printed with its numbers; one they do not support is printed
with what was measured and "not reproduced in this run". No measured figure is typed here:
everything comes from the committed runs, the model's constants, or ORIGINAL (the published
figures of the experiment this project re-runs, cited in one place).
"""

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from core.servers import GUNICORN_TIMEOUT_S, flag
from core.sets import SETS

from . import parse, summary
from core.model import DB_POOL, DEFAULT_THREAD_LIMIT, HTTPX_MAX_CONNECTIONS

NOT_REPRODUCED = "not reproduced in this run"
SAME = 0.10  # two figures this close (of the larger) are "the same" where a run-to-run spread is unknown
QUEUE_COST = 3  # "costs CPU": a queued request at least this many times a request at a just-full pool
ANSWERED = 0.99  # "answered them all" in the open loop: this share of the offered requests, in every run
LATENCY_SLACK = 0.10  # "no slower": a median latency within this share above the sleep

# The original experiment's published figures: requests in 1 min, req/s, latency avg, timeouts.
# github.com/ajndkr/fastapi-concurrency-tests, README (one run per cell, hardware not stated).
ORIGINAL = {
    ("1w x 1t", "sync"): (200, 3.33, "18.04 s", 50), ("1w x 1t", "async"): (500, 8.33, "10.01 s", 0),
    ("1w x 4t", "sync"): (200, 3.33, "17.80 s", 53), ("1w x 4t", "async"): (500, 8.33, "10.00 s", 0),
    ("4w x 1t", "sync"): (500, 8.33, "10.00 s", 0), ("4w x 1t", "async"): (500, 8.33, "10.00 s", 0),
    ("4w x 4t", "sync"): (500, 8.33, "10.01 s", 0), ("4w x 4t", "async"): (500, 8.33, "10.00 s", 0),
}


@dataclass
class Run:
    """A committed run directory, summarised once for every claim that quotes it."""

    run_dir: Path
    rows: list[dict]
    groups: list[dict]
    parameters: dict
    environment: dict
    document: dict = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> "Run":
        document = parse.read_json(run_dir / "run.json")
        rows, groups = summary.summarise_run(run_dir)
        return cls(run_dir, rows, groups, document["parameters"], document["environment"], document)

    @property
    def timeout_s(self) -> float:
        return float(summary.read_cells(self.run_dir)[0].timeout)


@dataclass
class Claim:
    title: str  # what the data should show, in bold
    holds: bool
    evidence: str  # the figures it rests on, printed whether it holds or not
    sets: tuple = ()
    key: str = ""  # its key figure, for the README's one line
    finding: str = ""  # the function that made it (evaluate() sets it): its anchor on its set's page

    @property
    def name(self) -> str:
        return self.title
    def markdown(self) -> str:
        if self.holds:
            return f"- **{self.title}** {self.evidence}"
        return f"- **{self.title}** ✗ {NOT_REPRODUCED}: {self.evidence}"


class Missing(Exception):
    """A claim's run, or a cell it needs, is not among the committed runs."""


def find(groups: list[dict], **where) -> dict:
    matches = [g for g in groups if all(g.get(k) == v for k, v in where.items())]
    if len(matches) != 1:
        raise Missing(f"one cell with {where}, found {len(matches)}")
    return matches[0]


def ok(g: dict) -> bool:
    """Every repetition of the cell matched the model's band."""
    return g["as_predicted"] == g["runs"]


def rng(g: dict, key: str, digits: int = 0) -> str:
    return summary.format_range(g[f"{key}_median"], g[f"{key}_min"], g[f"{key}_max"], digits)


def above(a: dict, b: dict, key: str = "requests") -> bool:
    """Every run of group A above every run of group B in KEY: how a finding says "more" or "differ"."""
    return a[f"{key}_min"] > b[f"{key}_max"]


def same(a: float, b: float, spread: float = 0.0) -> bool:
    return abs(a - b) <= max(SAME * max(abs(a), abs(b)), spread)


def run_spread(g: dict) -> float:
    return g["requests_max"] - g["requests_min"] + (g["predicted_edge"] or 0)


def predicted(g: dict) -> str:
    return summary.predicted_text(g, spread_seen=False)


def cpu_s_per_request(rows: list[dict], **where) -> float | None:
    """Median over the matching runs of the server's CPU seconds per answered (2xx) request."""
    values = [r["server_cpu_s"] / r["requests_ok"] for r in rows if all(r.get(k) == v for k, v in where.items())
              and r["server_cpu_s"] is not None and r["requests_ok"]]
    return statistics.median(values) if values else None


def pct(share: float | None) -> str:
    return summary.format_percent(share)


def here(run) -> str:
    """The machine a CPU-bound figure was measured on: such figures hold for it alone."""
    return f"{run.environment['cpu_count']} cores of {run.environment['cpu_model']}"


# ---------------------------------------------------------------- the seed: why the original saw what it saw


def client_bound_async(runs) -> Claim:
    seed = runs["seed"].groups
    one, four = find(seed, config="1w x 1t", endpoint="async"), find(seed, config="4w x 4t", endpoint="async")
    holds = ok(one) and ok(four) and one["peak_in_handler_max"] == one["connections"] and all(
        b.startswith("client") for g in (one, four) for b in g["bound_by_runs"])
    original = ORIGINAL[("1w x 1t", "async")][0]
    return Claim(
        "The original `/async` numbers were flat because the client was the limit, not the server.",
        holds,
        f"{one['connections']} connections that each wait {one['sleep_s']:g} s complete at most "
        f"{one['connections']} requests per wave: predicted {predicted(one)} in {one['duration_s']:g} s "
        f"(the original published {original}). We measured {rng(one, 'requests')} with 1 worker and "
        f"{rng(four, 'requests')} with 4 x 4; the single worker had up to {one['peak_in_handler_max']} requests "
        f"sleeping at once, every connection the client had, at {pct(one['server_cpu_share'])} of the CPU. "
        f"More workers cannot speed up a server that is waiting for its client.", ("seed",),
        key=f"1 worker and 4 x 4 alike: {rng(one, 'requests')} and {rng(four, 'requests')} requests, predicted {predicted(one)}")


def one_worker_def(runs) -> Claim:
    seed = runs["seed"]
    g = find(seed.groups, config="1w x 1t", endpoint="sync")
    original = ORIGINAL[("1w x 1t", "sync")]
    holds = ok(g) and g["peak_in_handler_max"] == DEFAULT_THREAD_LIMIT and all(
        b.startswith("thread limiter") for b in g["bound_by_runs"])
    return Claim(
        f"1 worker with `def` is held to anyio's {DEFAULT_THREAD_LIMIT} threads.",
        holds,
        f"FastAPI runs a `def` endpoint in anyio's thread pool, at most {DEFAULT_THREAD_LIMIT} at once per "
        f"worker: {DEFAULT_THREAD_LIMIT} / {g['sleep_s']:g} s = {DEFAULT_THREAD_LIMIT / g['sleep_s']:g} req/s, "
        f"predicted {predicted(g)} requests (the original published {original[0]}, {original[1]} req/s). We "
        f"measured {rng(g, 'requests')} ({g['requests_per_sec_median']:.2f} req/s); the server never had more "
        f"than {g['peak_in_handler_max']} requests inside the handler, and when wrk stopped "
        f"{rng(g, 'in_flight_at_stop')} were in it or waiting for a thread (peak waiting "
        f"{g['peak_waiting_max']}). The waiting is why latency averages {summary.format_seconds(g['latency_avg_s_median'])} "
        f"and {g['timeouts_median']:g} responses (median) took longer than wrk's {seed.timeout_s:g} s timeout.",
        ("seed",),
        key=f"{rng(g, 'requests')} requests, {g['peak_in_handler_max']} at most inside the handler")


def threads_flag(runs) -> Claim:
    seed, threads = runs["seed"].groups, runs["threads"].groups
    s1, s4 = find(seed, config="1w x 1t", endpoint="sync"), find(seed, config="1w x 4t", endpoint="sync")
    t1, t4 = find(threads, config="1w x 1t", endpoint="sync"), find(threads, config="1w x 4t", endpoint="sync")
    # "Nothing": within what the repetitions and the edge wave already vary by, not a 10% allowance.
    holds = (abs(s1["requests_median"] - s4["requests_median"]) <= max(run_spread(s1), run_spread(s4))
             and abs(t1["requests_median"] - t4["requests_median"]) <= max(run_spread(t1), run_spread(t4))
             and s1["peak_in_handler_max"] == s4["peak_in_handler_max"] == t4["peak_in_handler_max"])
    return Claim(
        "`--threads` does nothing for an ASGI worker.",
        holds,
        f"gunicorn's `threads` setting only affects its gthread worker. 1x1 vs 1x4 `/sync`: {rng(s1, 'requests')} vs "
        f"{rng(s4, 'requests')} requests; at {t1['connections']} connections {t1['requests_per_sec_median']:.1f} vs "
        f"{t4['requests_per_sec_median']:.1f} req/s; the peak inside the handler is {s1['peak_in_handler_max']} "
        f"without and {t4['peak_in_handler_max']} with `--threads 4`.", ("seed", "threads"),
        key=f"one worker with `--threads 1` or `4`, `/sync`: {rng(s1, 'requests')} vs {rng(s4, 'requests')} requests")


def thread_limiter_knob(runs) -> Claim:
    threads = runs["threads"].groups
    base = find(threads, config="1w x 1t", endpoint="sync")
    cells = [base] + [find(threads, config=f"1w x 1t limit {n}", endpoint="sync") for n in (100, 400)]
    limits = [DEFAULT_THREAD_LIMIT, 100, 400]
    # Each as the model predicts with the peak at its limit, and every run of a higher limit above every run of a lower.
    holds = (all(ok(g) and g["peak_in_handler_max"] == limit for g, limit in zip(cells, limits))
             and all(above(high, low) for low, high in zip(cells, cells[1:])))
    return Claim(
        "Raising anyio's thread limiter raises the ceiling for `def`.",
        holds,
        f"With `THREAD_LIMIT` {' / '.join(map(str, limits))} (one worker, {base['connections']} connections, "
        f"{base['sleep_s']:g} s sleep): {' / '.join(rng(g, 'requests') for g in cells)} requests, every run of a "
        f"higher limit above every run of a lower; peaks {' / '.join(str(g['peak_in_handler_max']) for g in cells)} "
        f"inside the handler, each cell as the model predicts ({' / '.join(predicted(g) for g in cells)}).", ("threads",),
        key=f"THREAD_LIMIT {' / '.join(map(str, limits))}: {' / '.join(format(g['requests_per_sec_median'], '.1f') for g in cells)} req/s")


def spread_caps_def(runs) -> Claim:
    seed = runs["seed"]
    cells = [r for r in seed.rows if r["workers"] == 4 and r["endpoint"] == "sync"]
    if not cells:
        raise Missing("4-worker /sync cells in the seed run")
    lopsided = [r for r in cells if max(r["connections_per_worker"]) > DEFAULT_THREAD_LIMIT]
    # Run by run and worker by worker: never more inside the handler than its own threads or its own connections.
    holds = all(r["as_predicted"] and len(r["connections_per_worker"]) == r["workers"]
                and r["peak_in_handler_per_worker"] == [min(c, DEFAULT_THREAD_LIMIT) for c in r["connections_per_worker"]]
                for r in cells)
    listing = "; ".join(f"{summary.format_spread(r['connections_per_worker'])} -> {r['requests']} "
                        f"(peaks {summary.format_spread(r['peak_in_handler_per_worker'])})" for r in cells)
    return Claim(
        f"With 4 workers, each worker runs `def` on its own {DEFAULT_THREAD_LIMIT} threads: what it answers follows "
        "the connections it took.",
        holds,
        f"Connections per worker -> requests (and the most each worker had inside the handler), in every 4-worker "
        f"`/sync` run: {listing}. In every run each worker's peak was min(its connections, {DEFAULT_THREAD_LIMIT}), "
        f"and each run matched the model fed with its spread; {len(lopsided)} of {len(cells)} runs had a worker above "
        f"{DEFAULT_THREAD_LIMIT}. At a {cells[0]['sleep_s']:g} s sleep the wave that ends as wrk stops can hide the "
        "difference in the count: the peaks show it.", ("seed",),
        key=f"each worker's peak min(its connections, {DEFAULT_THREAD_LIMIT}) in all {len(cells)} runs, {len(lopsided)} with a worker above {DEFAULT_THREAD_LIMIT}")


# ---------------------------------------------------------------- beyond the seed


def async_beside_sync(sweep: list[dict]) -> tuple[dict, dict]:
    """One worker at the sweep's largest connection count: `/async` there, and `/sync` at as many."""
    asyncs = [g for g in sweep if g["config"] == "1w x 1t" and g["endpoint"] == "async"]
    if not asyncs:
        raise Missing("1-worker /async cells")
    top = max(asyncs, key=lambda g: g["connections"])
    return top, find(sweep, config="1w x 1t", endpoint="sync", connections=top["connections"])


def async_wins(runs) -> Claim:
    sweep = runs["concurrency"].groups
    counts = sorted({g["connections"] for g in sweep if g["config"] == "1w x 1t" and g["endpoint"] == "async"})
    pairs = [(c, find(sweep, config="1w x 1t", endpoint="async", connections=c),
              find(sweep, config="1w x 1t", endpoint="sync", connections=c)) for c in counts]
    more = [(c, a, d) for c, a, d in pairs if c > DEFAULT_THREAD_LIMIT]
    within = [(c, a, d) for c, a, d in pairs if c <= DEFAULT_THREAD_LIMIT]
    if not more or not within:
        raise Missing(f"1-worker cells at and above {DEFAULT_THREAD_LIMIT} connections")
    holds = (all(above(a, d) for _, a, d in more)
             and all(abs(a["requests_median"] - d["requests_median"]) <= max(run_spread(a), run_spread(d))
                     for _, a, d in within))
    top, sync = async_beside_sync(sweep)
    return Claim(
        f"`async def` answers more than `def` exactly where the client sends more than the {DEFAULT_THREAD_LIMIT} "
        "threads hold.",
        holds,
        f"One worker, {top['sleep_s']:g} s sleep, requests answered by `async def` vs `def` at each connection count "
        "of the sweep: " + "; ".join(f"{c}: {rng(a, 'requests')} vs {rng(d, 'requests')}" for c, a, d in pairs)
        + f". Above {DEFAULT_THREAD_LIMIT} connections every `async def` run answered more than every `def` run; at "
        f"{DEFAULT_THREAD_LIMIT} and below the two differ by no more than their runs (and the wave ending as wrk "
        f"stops) do. At {top['connections']} connections `async def` was bound by {top['bound_by']}; `def` by "
        f"{sync['bound_by']}, {sync['never_answered_median']:g} connections never answered in the run.",
        ("concurrency",),
        key=f"{top['connections']} connections: `async def` {rng(top, 'requests_per_sec')} req/s, `def` "
            f"{rng(sync, 'requests_per_sec', 1)}")


def workers_for_async(runs) -> Claim:
    sweep = runs["concurrency"].groups
    ones = sorted((g for g in sweep if g["config"] == "1w x 1t" and g["endpoint"] == "async"), key=lambda g: g["connections"])
    if not ones:
        raise Missing("1-worker /async cells")
    top = ones[-1]
    four = find(sweep, config="4w x 1t", endpoint="async", connections=top["connections"])
    lower = [(g, find(sweep, config="4w x 1t", endpoint="async", connections=g["connections"])) for g in ones[:-1]]
    holds = (top["cpu_bound"] == top["runs"] and above(four, top, "requests_per_sec")
             and all(ok(a) and ok(b) and a["bound_by"].startswith("client") and b["bound_by"].startswith("client")
                     for a, b in lower))
    run = runs["concurrency"]
    return Claim(
        "Workers help `async def` once a CPU is the limit, and not before.",
        holds,
        f"At {top['connections']} connections a CPU was the limit of one worker in {top['cpu_bound']} of {top['runs']} "
        f"runs (the summary's CPU verdict; the server used {pct(top['server_cpu_share'])} of the machine) and it answered {rng(top, 'requests_per_sec')} req/s; "
        f"4 workers {rng(four, 'requests_per_sec')}, more in every run ({four['bound_by']}). These req/s are this "
        f"machine's ({here(run)}, shared with wrk); the direction is what every run shows. Below that both gave what "
        f"the client allows, every cell bound by the client as the model predicts: " + ", ".join(
            f"{a['connections']} connections {a['requests_median']:g} vs {b['requests_median']:g}" for a, b in lower) + ".",
        ("concurrency",),
        key=f"{top['connections']} connections: 1 worker {rng(top, 'requests_per_sec')} req/s, 4 workers "
            f"{rng(four, 'requests_per_sec')} ({run.environment['cpu_count']} cores here)")


def workers_for_def(runs) -> Claim:
    sweep = runs["concurrency"].groups
    counts = sorted({g["connections"] for g in sweep if g["endpoint"] == "sync"})
    pairs = [(c, find(sweep, config="1w x 1t", endpoint="sync", connections=c),
              find(sweep, config="4w x 1t", endpoint="sync", connections=c)) for c in counts]
    ratios = {c: four["requests_median"] / one["requests_median"] for c, one, four in pairs}
    # Where every worker of every run took more connections than its threads, 4 workers must give 4x;
    # where the client sends no more than one worker's threads, the same as one worker.
    busy = [c for c, _, four in pairs if all(s and min(s) > DEFAULT_THREAD_LIMIT for s in four["connections_per_worker"])]
    idle = [c for c in counts if c <= DEFAULT_THREAD_LIMIT]
    holds = (all(ok(one) and ok(four) for _, one, four in pairs) and bool(busy) and bool(idle)
             and all(ratios[c] >= 4 * (1 - SAME) for c in busy) and all(abs(ratios[c] - 1) <= SAME for c in idle)
             and all(four["peak_in_handler_max"] <= DEFAULT_THREAD_LIMIT for _, _, four in pairs)
             and all(four["peak_in_handler_max"] == DEFAULT_THREAD_LIMIT for c, _, four in pairs if c in busy))
    return Claim(
        f"For `def`, each worker adds {DEFAULT_THREAD_LIMIT} thread slots: 4 workers give 4x once every worker "
        f"has more than {DEFAULT_THREAD_LIMIT} connections, and 1x while the client sends no more than "
        f"{DEFAULT_THREAD_LIMIT}.",
        holds,
        "4 workers over 1, `/sync`, as the requests each answered: " + ", ".join(
            f"{c} connections {ratios[c]:.2f}x" for c in counts)
        + f". Every worker took more than {DEFAULT_THREAD_LIMIT} connections in every run at "
        + ", ".join(map(str, busy)) + "; in between, the ratio is what the connections each worker took allow "
        "(every cell as the model fed with that spread predicts). Per worker, the most inside the handler was "
        + ", ".join(f"{four['peak_in_handler_max']} at {c}" for c, _, four in pairs)
        + f": never above {DEFAULT_THREAD_LIMIT}, and {DEFAULT_THREAD_LIMIT} wherever every worker was busy.",
        ("concurrency",),
        key=", ".join(f"{ratios[c]:.1f}x at {c}" for c in counts) + " connections")


def blocking_async(runs) -> Claim:
    sweep = runs["concurrency"].groups
    cells = [g for g in sweep if g["endpoint"] == "async-blocking"]
    if not cells:
        raise Missing("/async-blocking cells")
    beside = {id(g): [find(sweep, config=g["config"], endpoint=e, connections=g["connections"]) for e in ("sync", "async")]
              for g in cells}
    fewer = [g for g in cells if all(above(o, g) for o in beside[id(g)])]
    holds = all(ok(g) and g["peak_in_handler_max"] == 1 for g in cells) and len(fewer) == len(cells)
    top = max(cells, key=lambda g: (g["connections"], g["workers"]))
    one = find(sweep, config="1w x 1t", endpoint="async-blocking", connections=top["connections"])
    workers = " and ".join(str(w) for w in sorted({g["workers"] for g in cells}))
    counts = ", ".join(str(c) for c in sorted({g["connections"] for g in cells}))
    return Claim(
        "Blocking inside `async def` is the worst of both: fewer answers than `def` and than `async def`, at every "
        "connection count.",
        holds,
        f"`time.sleep` in an `async def` holds the event loop, so a worker serves one request per sleep whatever the "
        f"connections: at {top['connections']} connections {one['requests_per_sec_median']:.2f} req/s with 1 worker, "
        f"{top['requests_per_sec_median']:.2f} with {top['workers']}; the most inside the handler at once was 1 per "
        f"worker in {sum(g['peak_in_handler_max'] == 1 for g in cells)} of {len(cells)} cells. In {len(fewer)} of "
        f"{len(cells)} cells ({workers} workers; {counts} connections) every run answered fewer than every run of "
        "`/sync` and of `/async` beside it.", ("concurrency",),
        key=f"{one['requests_per_sec_median']:.2f} req/s per worker at {top['connections']} connections, "
            f"fewer than both in {len(fewer)} of {len(cells)} cells")


def worker_killed(runs) -> Claim:
    run = runs["worker-killed"]
    (g,) = run.groups
    timeout = f"{flag(run.parameters['gunicorn_cmd_args'], '--timeout', GUNICORN_TIMEOUT_S):g}"
    holds = (g["sleep_s"] < float(timeout) and bool(run.rows)
             and all(r["worker_timeouts"] > 0 and r["errors"] > 0 for r in run.rows))  # in every run
    return Claim(
        "gunicorn kills a worker whose loop blocks again and again, even when no single block outlasts `--timeout`.",
        holds,
        f"In [`{run.run_dir.name}`]({run.run_dir.name}/) (`GUNICORN_CMD_ARGS={run.parameters['gunicorn_cmd_args']}`, "
        f"{g['connections']} connections, `/async-blocking` sleeping {g['sleep_s']:g} s per request) gunicorn logged "
        f"{g['worker_timeouts']} `WORKER TIMEOUT` over {g['runs']} runs and wrk saw up to {g['errors_max']} errors; "
        f"no request blocked the loop longer than {g['sleep_s']:g} s of the {timeout} s timeout. Why: see "
        f"[the heartbeat](#why-a-blocked-worker-is-killed).", ("worker-killed",),
        key=f"{g['worker_timeouts']} WORKER TIMEOUT in {g['runs']} runs, no block above {g['sleep_s']:g} s of {timeout} s")


def thread_hop(runs) -> Claim:
    run = runs["overhead"]
    d, a = find(run.groups, endpoint="sync"), find(run.groups, endpoint="async")
    # The direction in every run, not just the medians: every `def` run slower and dearer than every `async def` one.
    cost = {e: [1e6 * r["server_cpu_s"] / r["requests_ok"] for r in run.rows
                if r["endpoint"] == e and r["requests_ok"] and r["server_cpu_s"] is not None] for e in ("sync", "async")}
    holds = (len(cost["sync"]) == d["runs"] and len(cost["async"]) == a["runs"] and min(cost["sync"]) > max(cost["async"])
             and above(a, d, "requests_per_sec") and d["cpu_bound"] == d["runs"])
    us = {e: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" if v else "-" for e, v in cost.items()}
    pinned = all(r["pinned"] for r in run.rows)
    return Claim(
        f"The thread hop has a price at a {d['sleep_s']:g} s sleep: `def` answered fewer and cost more CPU per "
        "request than `async def`, in every run.",
        holds,
        f"Sleep {d['sleep_s']:g}, {d['workers']} worker(s), {d['connections']} connections"
        + (", wrk and the server pinned to cores of their own" if pinned else "") + f", on {here(run)}: `def` "
        f"{rng(d, 'requests_per_sec')} req/s, `async def` {rng(a, 'requests_per_sec')}; server CPU per answered "
        f"request {us['sync']} us for `def`, {us['async']} us for `async def` (`def` in every run: "
        f"{d['bound_by_runs'] and next(iter(d['bound_by_runs']))}). Every `def` run was below every `async def` "
        "run and dearer per request: that direction is what the check holds. The magnitudes, and so the ratio, are "
        "this machine's on the day of the run: on another CPU they differ.", ("overhead",),
        key=f"`def` {rng(d, 'requests_per_sec')} vs `async def` {rng(a, 'requests_per_sec')} req/s here "
            f"({run.environment['cpu_count']} cores)")


def worker_class(runs) -> Claim:
    run = runs["workers"]
    groups = run.groups
    pairs = [(g, find(groups, config=g["config"] + " asgi", endpoint=g["endpoint"], connections=g["connections"],
                      sleep_s=g["sleep_s"])) for g in groups if "asgi" not in g["config"]]
    # Named by their parameters: the set's largest connection count and its no-sleep cells are the heavy ones.
    most = max((u["connections"] for u, _ in pairs if u["sleep_s"] > 0), default=None)
    heavy = [(u, n) for u, n in pairs if u["sleep_s"] == 0 or u["connections"] == most]
    modest = [(u, n) for u, n in pairs if (u, n) not in heavy]
    # "Differ": every run of one above every run of the other; anything less is within what runs vary by.
    uvicorn_more = [(u, n) for u, n in heavy if above(u, n)]
    asgi_more = [(u, n) for u, n in heavy if above(n, u)]
    holds = bool(modest) and bool(heavy) and all(ok(u) and ok(n) for u, n in modest) and not asgi_more

    def cell(u: dict) -> str:
        return f"{u['config']} `/{u['endpoint']}`, {u['connections']} connections, sleep {u['sleep_s']:g} s"
    return Claim(
        f"Worker class: the same where the model explains both; at {most} connections and with no sleep, "
        "UvicornWorker answered more than gunicorn's `asgi` worker wherever the two differ beyond their runs.",
        holds,
        "Each cell as the model predicts with both classes: " + "; ".join(
            f"{cell(u)}: {rng(u, 'requests')} vs {rng(n, 'requests')} ({u['bound_by']})" for u, n in modest)
        + f". At the set's heavy cells, UvicornWorker vs `asgi`, on {here(run)}: " + "; ".join(
            f"{cell(u)}: {rng(u, 'requests_per_sec')} vs {rng(n, 'requests_per_sec')} req/s (UvicornWorker: "
            f"{u['bound_by']}; `asgi`: {n['bound_by']})" for u, n in heavy)
        + f". Every UvicornWorker run above every `asgi` run in {len(uvicorn_more)} of {len(heavy)} of them, every "
        f"`asgi` run above every UvicornWorker run in {len(asgi_more)}; the rest overlap. Where a cell is marked "
        "unexplained, no CPU was measured saturated: see the open questions below.", ("workers",),
        key=f"UvicornWorker above `asgi` in every run in {len(uvicorn_more)} of {len(heavy)} heavy cells, the "
            f"reverse in {len(asgi_more)}")


# ---------------------------------------------------------------- servers and the spread


def reuse_port(runs) -> Claim:
    run = runs["servers"]
    fixed = [r for r in run.rows if r["server"] == "gunicorn-reuse-port" and r["endpoint"] == "sync" and r["sleep_s"] > 0]
    plain = [r for r in run.rows if r["config"] == f"{r['workers']}w x 1t" and r["endpoint"] == "sync" and r["sleep_s"] > 0]
    if not fixed or not plain:
        raise Missing("gunicorn and gunicorn --reuse-port /sync cells")
    most = max(max(r["connections_per_worker"]) for r in fixed)
    over = [r for r in plain if max(r["connections_per_worker"]) > DEFAULT_THREAD_LIMIT]
    # What it did, in every run; what plain gunicorn did is a count, whatever it comes to (a spread is a draw).
    holds = most <= DEFAULT_THREAD_LIMIT and all(
        r["as_predicted"] and r["bound_by"].startswith("client") and r["expected_requests"] == r["predicted_requests"]
        for r in fixed)
    show = lambda rows: "; ".join(f"{summary.format_spread(r['connections_per_worker'])} -> {r['requests']}" for r in rows)
    return Claim(
        f"`--reuse-port` kept every worker within its {DEFAULT_THREAD_LIMIT} threads' worth of connections in every "
        f"run; without it, a worker took more in {len(over)} of {len(plain)} runs.",
        holds,
        f"With it every gunicorn worker has a listening socket of its own and the kernel spreads new connections "
        f"over them. {fixed[0]['workers']} workers, `/sync`, {fixed[0]['connections']} connections: with "
        f"`--reuse-port` {show(fixed)} (most on one worker: {most}, every run bound by the client); without, "
        f"{show(plain)}. {len(fixed)} and {len(plain)} runs: a spread is a draw each run, so these counts say what "
        f"happened here, not how often it happens. gunicorn {run.environment['packages']['gunicorn']} here.",
        ("servers",),
        key=f"busiest worker at most {most} of {fixed[0]['connections']} connections with it; above "
            f"{DEFAULT_THREAD_LIMIT} in {len(over)} of {len(plain)} runs without")


def which_server(runs) -> Claim:
    run = runs["servers"]
    client_bound = [g for g in run.groups if g["sleep_s"] > 0]
    idle = [g for g in run.groups if g["sleep_s"] == 0]
    busy = [g for g in idle if g["endpoint"] == "async"]
    if not busy or not client_bound:
        raise Missing("servers cells")
    busy.sort(key=lambda g: -g["requests_per_sec_median"])
    # "Differ": every run of one above every run of the other; anything less is within what runs vary by.
    apart = [(a, b) for i, a in enumerate(busy) for b in busy[i + 1:] if above(a, b, "requests_per_sec")]
    holds = all(ok(g) for g in client_bound) and all(g["cpu_bound"] == g["runs"] for g in idle)
    pinned = "pinned" if all(r["pinned"] for r in run.rows if r["sleep_s"] == 0) else "unpinned, sharing the cores"
    beats = {a["config"]: [b["config"] for x, b in apart if x is a] for a, _ in apart}
    tops = list(beats)
    differ = ("; ".join(f"{a} above {', '.join(bs)}" for a, bs in beats.items()) if apart
              else "no pair: every range overlaps another")
    return Claim(
        "Which server: at the seed's load, each gave what its connection spread allows; at no sleep, a CPU is "
        "the limit for each, and only the pairs listed differ beyond their runs' range.",
        holds,
        f"At {client_bound[0]['connections']} connections every run of every server matched the model fed with "
        f"the spread its workers reported ({sum(g['as_predicted'] for g in client_bound)} of "
        f"{sum(g['runs'] for g in client_bound)} runs). At sleep 0, every run of every server had a CPU saturated "
        f"(the summary's CPU verdict); `/async` at {busy[0]['connections']} connections on {here(run)} (wrk "
        f"{pinned}): " + ", ".join(f"{g['config']} {rng(g, 'requests_per_sec')}" for g in busy)
        + f" req/s. Every run of one above every run of the other: {differ}. RSS of the whole server: "
        + ", ".join(f"{g['config']} {g['server_rss_mib_median']:.0f} MiB" for g in busy
                    if g["server_rss_mib_median"] is not None) + ".", ("servers",),
        key=f"sleep 0: {tops[0]} above every other server in every run" if len(tops) == 1 and len(beats[tops[0]]) == len(busy) - 1
            else f"sleep 0, every run apart: {differ}")


# ---------------------------------------------------------------- the upstream call


def held_to(rows: list[dict], limit: int) -> tuple[bool, list[str]]:
    """The upstream's peak of calls in flight is what the limit allows each worker of the
    connections it took, summed: exact, run by run, or the limit is not what held them."""
    def allowed(r: dict) -> int:
        return sum(min(c, limit) for c in r["connections_per_worker"])
    holds = bool(rows) and all(r["connections_per_worker"] and r["upstream_peak"] == allowed(r) for r in rows)
    cells = sorted({(r["workers"], r["connections"]) for r in rows if max(r["connections_per_worker"] or [0]) > limit})
    shown = []
    for workers, connections in cells:
        same_cell = [r for r in rows if (r["workers"], r["connections"]) == (workers, connections)]
        peaks = {r["upstream_peak"] for r in same_cell}
        if all(min(r["connections_per_worker"]) >= limit for r in same_cell) and len(peaks) == 1:
            shown.append(f"{workers}w at {connections} connections: {peaks.pop()} in every run")
        else:
            shown.append(f"{workers}w at {connections}: " + ", ".join(
                f"{summary.format_spread(r['connections_per_worker'])} -> {r['upstream_peak']}" for r in same_cell))
    return holds, shown


def pool_limit(runs) -> Claim:
    run = runs["upstream"]
    rows = [r for r in run.rows if r["endpoint"] == "async-http" and "pool" not in r["config"]]
    holds, shown = held_to(rows, HTTPX_MAX_CONNECTIONS)
    holds = holds and any(r["upstream_peak"] == HTTPX_MAX_CONNECTIONS * r["workers"] for r in rows)
    return Claim(
        f"`async def` with an `httpx.AsyncClient` is held to the client's pool: {HTTPX_MAX_CONNECTIONS} calls per worker.",
        holds,
        f"In each of the {len(rows)} `/async-http` runs the upstream's own peak of calls in flight equals "
        f"min(connections the worker took, {HTTPX_MAX_CONNECTIONS}) summed over the workers. Where a worker took more: "
        + "; ".join(shown) + ". Requests beyond the pool wait inside the worker for a pooled connection "
        "(see the next finding for what that costs).", ("upstream",),
        key=f"upstream peak = min(connections, {HTTPX_MAX_CONNECTIONS}) per worker in all {len(rows)} runs")


def pool_raised(runs) -> Claim:
    run = runs["upstream"]
    raised = next((g for g in run.groups if g["endpoint"] == "async-http" and "pool" in g["config"]), None)
    if raised is None:
        raise Missing("the HTTP_POOL cell")
    default = find(run.groups, config="1w x 1t", endpoint="async-http", connections=raised["connections"])
    holds = (above(raised, default, "upstream_peak")  # every run, not one run's maximum
             and raised["requests_ok_min"] > (1 + SAME) * default["requests_ok_max"])
    return Claim(
        "Raising the pool moves the ceiling.",
        holds,
        f"One worker, {raised['connections']} connections: {default['config']} `/async-http` {rng(default, 'requests_ok')} "
        f"answered (upstream peak {rng(default, 'upstream_peak')}), {raised['config']} {rng(raised, 'requests_ok')} "
        f"(peak {rng(raised, 'upstream_peak')}); server CPU {pct(default['server_cpu_share'])} and "
        f"{pct(raised['server_cpu_share'])} of the machine ({raised['bound_by']}).", ("upstream",),
        key=f"{rng(default, 'requests_ok')} -> {rng(raised, 'requests_ok')} answered")


def pool_queue_costs_cpu(runs) -> Claim:
    run, sweep = runs["upstream"], runs["concurrency"]
    cells = [g for g in run.groups if g["endpoint"] == "async-http" and "pool" not in g["config"]]
    full = next((g for g in cells if g["workers"] == 1 and g["connections"] == HTTPX_MAX_CONNECTIONS), None)
    # Cells where every worker had at least a pool's worth of requests queued behind its pool.
    queued = [g for g in cells if g["connections"] >= 2 * HTTPX_MAX_CONNECTIONS * g["workers"]]
    if full is None or not queued:
        raise Missing("/async-http at exactly the pool, and above twice the pool per worker")

    cpus = run.environment["cpu_count"]

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else 1000 * seconds

    def cost(g: dict) -> float | None:
        return ms(cpu_s_per_request(run.rows, config=g["config"], connections=g["connections"], endpoint=g["endpoint"]))

    def per_run(g: dict) -> list[float]:
        return [1000 * r["server_cpu_s"] / r["requests_ok"] for r in run.rows
                if summary.group_key(r) == summary.group_key(g) and r["server_cpu_s"] is not None and r["requests_ok"]]

    def plain(g: dict) -> float | None:
        return ms(cpu_s_per_request(sweep.rows, config=g["config"], connections=g["connections"], endpoint="async"))

    # The title: every queued run at least 3x every full-pool run's CPU per answered request. The evidence's
    # "where a 1-worker cell had a CPU as its limit in every run, every run answered fewer than the model":
    # checked on those cells only; the others are the open questions.
    full_runs, queued_runs = per_run(full), [(g, per_run(g)) for g in queued]
    holds = (len(full_runs) == full["runs"]
             and all(len(costs) == g["runs"] and min(costs) >= QUEUE_COST * max(full_runs) for g, costs in queued_runs)
             and all(g["requests_ok_max"] < (1 - summary.CLOSE) * g["predicted_requests"]
                     for g in queued if g["workers"] == 1 and g["cpu_bound"] == g["runs"]))
    return Claim(
        f"Requests queued on httpx's pool cost the worker CPU: at least {QUEUE_COST}x as much per answered request, "
        "in every run.",
        holds,
        f"Server CPU per answered `/async-http` request ({full['sleep_s']:g} s upstream calls), on {here(run)}: "
        f"{cost(full):.1f} ms with the pool just full (1 worker, {full['connections']} connections, "
        f"{rng(full, 'requests_ok')} answered, " + ("as predicted" if ok(full) else full["bound_by"])
        + "). With a queue behind the pool: " + "; ".join(
            f"{g['workers']}w at {g['connections']} connections {cost(g):.1f} ms"
            + (f" (`/async` without the client: {plain(g):.2f} ms)" if plain(g) else "")
            + f": {rng(g, 'requests_ok')} answered and {rng(g, 'non_2xx')} 503 where the limits alone give "
            f"{predicted(g)}; server CPU {pct(g['server_cpu_share'])} of the machine, "
            f"{pct(g['server_cpu_share'] * cpus / min(g['workers'], cpus))} of what its workers can use: "
            f"{g['bound_by']}" for g in queued)
        + ". Every time a request joins or leaves the pool, httpcore walks the whole queue (see "
        "[how the pool works](#how-the-pool-works)). Where a 1-worker cell had a CPU as its limit in every run (the "
        "summary's CPU verdict), every run answered fewer than the model: the extra CPU is why; where no CPU was "
        "measured saturated (marked unexplained), the shortfall, and the 503s that differ from the model's, are "
        "open questions.",
        ("upstream", "concurrency"),
        key=f"{cost(full):.1f} ms CPU per answered request at a full pool, {min(cost(g) for g in queued):.1f}-"
            f"{max(cost(g) for g in queued):.1f} ms with a queue ({cpus} cores here)")


def sync_http(runs) -> Claim:
    run = runs["upstream"]
    rows = [r for r in run.rows if r["endpoint"] == "sync-http"]
    holds, shown = held_to(rows, DEFAULT_THREAD_LIMIT)
    return Claim(
        f"`def` with `httpx.Client` is held to the {DEFAULT_THREAD_LIMIT} threads, not the pool.",
        holds,
        f"In each of the {len(rows)} `/sync-http` runs the upstream's peak equals min(connections the worker took, "
        f"{DEFAULT_THREAD_LIMIT}) summed over the workers, though the pool would allow {HTTPX_MAX_CONNECTIONS}. Where a worker took more: "
        + "; ".join(shown) + ".", ("upstream",),
        key=f"upstream peak = min(connections, {DEFAULT_THREAD_LIMIT}) per worker in all {len(rows)} runs")


def upstream_agrees(runs) -> Claim:
    run = runs["upstream"]
    checked, worst = 0, 0
    for r in run.rows:
        if r["upstream_completed"] is None or r["server_completed"] is None:
            continue
        calls = r["server_completed"] - (r["pool_timeouts"] or 0)
        # The two servers' snapshots are taken within the workers' 20 ms poll of each other.
        slack = (r["in_flight_at_stop"] or 0) + 0.02 * calls / r["window_s"] * 2
        worst = max(worst, round(abs(r["upstream_completed"] - calls) - slack))
        checked += 1
    holds = checked > 0 and worst <= 0
    return Claim(
        "The upstream's counters and the front server's agree.",
        holds,
        f"In {checked} cells the calls the upstream answered equal the front's answered requests minus its 503s, "
        f"within the requests still in flight when wrk stopped (largest gap beyond that: {worst}).", ("upstream",),
        key=f"{checked} cells, largest gap beyond the requests in flight {worst}")


# ---------------------------------------------------------------- open loop


def open_loop(runs) -> Claim:
    run = runs["openloop"]
    sync = sorted((g for g in run.groups if g["config"] == "1w x 1t" and g["endpoint"] == "sync"), key=lambda g: g["rate"])
    asyncs = sorted((g for g in run.groups if g["endpoint"] == "async"), key=lambda g: (g["workers"], g["rate"]))
    if not sync or not asyncs:
        raise Missing("openloop /sync and /async cells")
    over = [g for g in sync if g["offered_fraction"] > 1]
    async_rows = [r for r in run.rows if r["endpoint"] == "async"]
    # Slower: every run's median latency above the sleep by more than `async def` may be; timing out: in
    # every run wherever the model predicts timeouts; `async def`: each run on its own offered requests.
    holds = (all(ok(g) for g in sync) and bool(over) and bool(async_rows)
             and all(g["latency_median_s_min"] > (1 + LATENCY_SLACK) * g["sleep_s"] for g in over)
             and all(g["client_timeouts_min"] > 0 for g in over if g["predicted_timeouts"])
             and all(r["replies"] >= ANSWERED * r["offered"] for r in async_rows)
             and all(r["latency_median_s"] is not None and r["latency_median_s"] <= (1 + LATENCY_SLACK) * r["sleep_s"]
                     for r in async_rows))
    return Claim(
        f"Above its capacity, `def` gets slower, then times out, as the model predicts; `async def` answered "
        f"{ANSWERED:.0%} or more at every rate, its median latency within {LATENCY_SLACK:.0%} of the sleep.",
        holds,
        f"One worker, {sync[0]['sleep_s']:g} s sleep, capacity {sync[0]['capacity_per_s']:g} req/s "
        f"({DEFAULT_THREAD_LIMIT} threads / sleep), httperf offering a new connection at a fixed rate with a "
        f"{run.timeout_s:g} s timeout. `/sync`: " + "; ".join(
            f"{g['rate']:g}/s: {rng(g, 'replies')} of {g['offered_median']:g} answered, {rng(g, 'client_timeouts')} "
            f"timed out (predicted {g['predicted_timeouts']}), median {summary.format_seconds(g['latency_median_s_median'])}"
            for g in sync) + ". `/async` answered " + ", ".join(
            f"{g['replies_median']:g}/{g['offered_median']:g}" for g in asyncs)
        + f" at every rate and worker count, median latency at most "
        f"{summary.format_seconds(max(g['latency_median_s_max'] for g in asyncs))}.", ("openloop",),
        key=f"`/sync` offered {sync[-1]['rate']:g}/s: {rng(sync[-1], 'client_timeouts')} of {sync[-1]['offered_median']:g} timed out")


def span(values: list[float]) -> str:
    low, high = round(min(values)), round(max(values))
    return f"{low}" if low == high else f"{low}–{high}"


def by_rate(rows: list[dict]) -> list[tuple[float, list[dict]]]:
    rates = sorted({r["rate"] for r in rows})
    return [(rate, [r for r in rows if r["rate"] == rate]) for rate in rates]


def open_loop_spread(runs) -> Claim:
    run = runs["openloop"]
    rows = [r for r in run.rows if r["workers"] > 1 and r["endpoint"] == "sync" and r["offered_fraction"] < 1
            and r["connections_per_worker"]]
    if not rows:
        raise Missing("multi-worker openloop /sync runs below capacity")
    per_worker = DEFAULT_THREAD_LIMIT / rows[0]["sleep_s"]

    def busiest(r: dict) -> float:
        return r["rate"] * max(r["connections_per_worker"]) / sum(r["connections_per_worker"])

    # The explanation, run by run: timeouts below capacity exactly where the busiest worker was
    # offered more than its own 40 threads take, none that the even model foresaw, and the count
    # nearer the model fed with the real shares than the even model's zero.
    holds = any(r["client_timeouts"] for r in rows) and all(
        bool(r["client_timeouts"]) == (busiest(r) > per_worker) and r["predicted_timeouts"] == 0
        and abs(r["client_timeouts"] - r["expected_timeouts"]) < r["client_timeouts"] - r["predicted_timeouts"]
        for r in rows if r["client_timeouts"] or busiest(r) > per_worker)
    return Claim(
        "With several workers, `def` can fall over below its capacity: new connections do not spread evenly.",
        holds,
        f"{rows[0]['workers']} workers of {DEFAULT_THREAD_LIMIT} threads take {per_worker * rows[0]['workers']:g} "
        f"req/s if the arrivals spread evenly, {per_worker:g} each. " + ". ".join(
            f"Offered {rate:g}/s ({same_rate[0]['offered_fraction']:.0%}), the workers took "
            + ", ".join(summary.format_spread(r["connections_per_worker"]) for r in same_rate)
            + f", so the busiest was offered {span([busiest(r) for r in same_rate])}/s; "
            + ", ".join(str(r["client_timeouts"]) for r in same_rate) + f" of {same_rate[0]['offered']} timed out "
            f"(the model fed with those shares: " + ", ".join(str(r["expected_timeouts"]) for r in same_rate)
            + f"; spread evenly: {same_rate[0]['predicted_timeouts']})"
            for rate, same_rate in by_rate(rows))
        + ". Every httperf request is a new connection, and each worker accepts what it wins of them"
        + (f"; httperf was pinned to a core of its own and all {rows[0]['workers']} workers shared the other "
           f"{run.environment['cpu_count'] - 1}: the spread was measured under that pinning only"
           if all(r["pinned"] for r in rows) else "") + ".",
        ("openloop",),
        key="timeouts below capacity in " + ", ".join(str(r["client_timeouts"]) for r in rows if r["client_timeouts"]) + " requests")


FINDINGS = [client_bound_async, one_worker_def, threads_flag, thread_limiter_knob, spread_caps_def, async_wins,
            workers_for_async, workers_for_def, blocking_async, worker_killed, thread_hop, worker_class,
            reuse_port, which_server, pool_limit, pool_queue_costs_cpu, sync_http, pool_raised, upstream_agrees,
            open_loop, open_loop_spread]


def evaluate(runs: dict, findings=None) -> list[Claim | str]:
    """Each finding as a Claim, or a line saying which committed run it still needs."""
    out = []
    for finding in findings or FINDINGS:
        try:
            claim = finding(runs)
            claim.finding = finding.__name__
            out.append(claim)
        except KeyError as missing:
            if missing.args[0] in runs or missing.args[0] not in [*SETS, "worker-killed"]:
                raise  # a mistyped key is a bug, not a run still to take
            out.append(f"- *{finding.__name__.replace('_', ' ')}*: needs the `{missing.args[0]}` reference run.")
        except Missing as missing:
            out.append(f"- *{finding.__name__.replace('_', ' ')}*: {missing} in the committed runs.")
    return out


# ---------------------------------------------------------------- the database pool


def db_cells(run, **where) -> list[dict]:
    cells = [g for g in run.groups if all(g.get(k) == v for k, v in where.items())]
    if not cells:
        raise Missing(f"db cells with {where}")
    return cells


def db_def_pool(runs) -> Claim:
    run = runs["db"]
    held = [g for g in db_cells(run, config="1w x 1t", endpoint="sync-db") if g["connections"] > DB_POOL]
    raised = find(run.groups, config=f"1w x 1t dbpool {DEFAULT_THREAD_LIMIT}+0", endpoint="sync-db")
    holds = (all(ok(g) and g["bound_by"].startswith("database pool") and g["db_pool_peak_max"] == DB_POOL
                 and g["peak_in_handler_max"] == min(g["connections"], DEFAULT_THREAD_LIMIT) for g in held)
             and ok(raised) and raised["bound_by"].startswith("thread limiter")
             and raised["db_pool_peak_max"] == DEFAULT_THREAD_LIMIT)
    return Claim(
        f"`def` is held to SQLAlchemy's pool ({DB_POOL} connections per worker), not to the {DEFAULT_THREAD_LIMIT} threads.",
        holds,
        f"One worker, `/sync-db` (`SELECT pg_sleep({held[0]['sleep_s']:g})` through a session from a yield "
        f"dependency): " + "; ".join(
            f"{g['connections']} connections {rng(g, 'requests')} requests (predicted {predicted(g)}), up to "
            f"{g['peak_in_handler_max']} inside the handler and {g['db_pool_peak_max']} holding a connection"
            for g in held)
        + f". The other threads wait in the pool. With the pool raised to {DEFAULT_THREAD_LIMIT} + 0 at "
        f"{raised['connections']} connections: {rng(raised, 'requests')} (predicted {predicted(raised)}), "
        f"{raised['db_pool_peak_max']} connections at once: the threads are the limit again.", ("db",),
        key=f"{rng(held[-1], 'requests')} requests, {held[-1]['db_pool_peak_max']} connections per worker; pool {DEFAULT_THREAD_LIMIT} + 0: {rng(raised, 'requests')}")


def db_async_pool(runs) -> Claim:
    run = runs["db"]
    rows = [r for r in run.rows if r["endpoint"] == "async-db" and r["config"] in ("1w x 1t", "4w x 1t")]
    held = [g for g in db_cells(run, endpoint="async-db") if g["config"] in ("1w x 1t", "4w x 1t")
            and g["connections"] >= 4 * DB_POOL * g["workers"] / 2]
    # Per worker and run: never more connections than the pool, and the whole pool wherever the worker
    # took a pool's worth of connections and more.
    per_worker = [(c, p) for r in rows for c, p in zip(r["connections_per_worker"], r["db_pool_peak_per_worker"])]
    holds = (bool(held) and all(ok(g) for g in held)
             and all(p <= DB_POOL for _, p in per_worker) and all(p == DB_POOL for c, p in per_worker if c > DB_POOL + 5))
    return Claim(
        f"`async def` is held to the pool too: {DB_POOL} queries per worker at once, whatever the connections.",
        holds,
        "`/async-db` (an `AsyncSession` on asyncpg): " + "; ".join(
            f"{g['workers']}w at {g['connections']} connections {rng(g, 'requests')} (predicted {predicted(g)}, "
            f"at most {g['db_pool_peak_max']} connections per worker)" for g in held)
        + f". In every run of 1 and 4 workers, no worker held more than {DB_POOL} connections, and every worker "
        f"that took more than {DB_POOL + 5} client connections held exactly {DB_POOL}.", ("db",),
        key=", ".join(f"{g['workers']}w at {g['connections']}: {rng(g, 'requests')}" for g in held))


def db_pool_timeout(runs) -> Claim:
    run = runs["db"]
    short = {g["endpoint"]: g for g in run.groups if "dbtimeout" in g["config"]}
    if set(short) != {"sync-db", "async-db"}:
        raise Missing("the short DB_POOL_TIMEOUT cells of /sync-db and /async-db")
    plain = {e: find(run.groups, config="1w x 1t", endpoint=e, connections=g["connections"]) for e, g in short.items()}
    rows = [r for r in run.rows if "dbtimeout" in r["config"]]
    sync_rows = [r for r in rows if r["endpoint"] == "sync-db"]
    answered_as_predicted = all(summary.within(r["requests_ok"], r["expected_requests"],
                                               r["expected_requests"] + r["expected_edge"], summary.CLOSE) for r in rows)
    holds = (answered_as_predicted and all(r["pool_timeouts"] == r["non_2xx"] > 0 and r["db_refused"] == 0 for r in rows)
             and all(ok(p) and p["non_2xx_max"] == 0 for p in plain.values()))
    a, d = short["async-db"], short["sync-db"]
    timeout = a["config"].split("dbtimeout ")[1]
    return Claim(
        "The pool timeout turns waiting into errors: each 503 a pool timeout, where the default 30 s gave none.",
        holds,
        f"`DB_POOL_TIMEOUT={timeout}` against a {a['sleep_s']:g} s query, one worker, {a['connections']} connections: "
        f"`/async-db` {rng(a, 'requests_ok')} answered and {rng(a, 'non_2xx')} 503 naming the pool timeout, where a "
        f"first-come, first-served queue gives {predicted(a)}; `/sync-db` {rng(d, 'requests_ok')} answered as "
        f"predicted, and {rng(d, 'non_2xx')} 503 where that queue gives {d['predicted_errors']}: more in "
        f"{sum(r['non_2xx'] > r['expected_errors'] for r in sync_rows)} of {len(sync_rows)} runs, so whether `def` "
        "loses more than a fair queue is not settled by these runs. With the "
        f"default 30 s, none: {rng(plain['async-db'], 'requests_ok')} and {rng(plain['sync-db'], 'requests_ok')} "
        "answered. The app counted each 503 as a pool timeout.", ("db",),
        key=f"`/async-db` {rng(a, 'non_2xx')} 503 against {a['predicted_errors']}, `/sync-db` {rng(d, 'non_2xx')} against "
            f"{d['predicted_errors']} predicted")


def db_max_connections(runs) -> Claim:
    run = runs["db"]
    over = [g for g in run.groups if g.get("predicted_errors_uncounted")]
    if not over:
        raise Missing("a cell whose pools ask PostgreSQL for more connections than it allows")
    if len(over) != 1:
        raise Missing(f"one cell whose pools ask for more connections than PostgreSQL allows, found {len(over)}")
    (g,) = over
    available = summary.database_available(run.run_dir)
    fits = [f for f in run.groups if f["endpoint"] == g["endpoint"] and f["workers"] < g["workers"]
            and f["connections"] == g["connections"]]
    rows = [r for r in run.rows if r["config"] == g["config"] and r["endpoint"] == g["endpoint"]]
    allowed = g["predicted_requests"]  # what `available` connections give in the run's waves
    share = [r["requests_ok"] / allowed for r in rows]
    holds = (bool(fits) and all(f["db_refused_max"] == 0 for f in fits)
             and all(r["db_refused"] > 0 and available - 1 <= r["db_backends_stop"] <= available for r in rows)
             and all(0.9 <= x <= 1 + summary.CLOSE for x in share))
    facts = run.document["database"]
    return Claim(
        "Workers × pool must stay below PostgreSQL's `max_connections`.",
        holds,
        f"PostgreSQL {facts['postgres_version']} allows {facts['max_connections']} connections, "
        f"{facts['superuser_reserved_connections']} of them for superusers: {available} for the app's role. "
        f"{g['workers']} workers x {DB_POOL} = {g['workers'] * DB_POOL} wanted at {g['connections']} connections: "
        f"{rng(g, 'db_refused')} requests refused (\"remaining connection slots are reserved\", a 503), "
        f"{rng(g, 'db_backends_stop')} of the role's connections open at the stop by PostgreSQL's own count, and "
        f"{rng(g, 'requests_ok')} answered: {min(share):.0%}-{max(share):.0%} of the {allowed} that {available} "
        f"connections allow in the run (a likely reason for the rest, not measured here: a slot is also held by "
        f"each attempt PostgreSQL refuses and each connection being opened or closed). With " + ", ".join(f"{f['workers']} workers" for f in fits)
        + " (" + ", ".join(f"{f['workers'] * DB_POOL}" for f in fits) + " wanted) none was refused.", ("db",),
        key=f"{g['workers']} x {DB_POOL} > {available}: {rng(g, 'db_refused')} refused, "
            f"{min(share):.0%}-{max(share):.0%} of what {available} connections allow answered")


def db_blocking(runs) -> Claim:
    run = runs["db"]
    cells = db_cells(run, endpoint="async-db-blocking")
    holds = all(ok(g) and g["peak_in_handler_max"] == 1 and g["db_pool_peak_max"] == 1 for g in cells)
    top = max(cells, key=lambda g: (g["workers"], g["connections"]))
    return Claim(
        "A sync session inside `async def` serves one query per worker at a time.",
        holds,
        f"`/async-db-blocking` calls the sync session from an `async def`, so the event loop waits in the driver: "
        f"in all {len(cells)} cells one request at a time per worker (one connection checked out), e.g. "
        f"{top['workers']} workers at {top['connections']} connections {rng(top, 'requests')} requests "
        f"(predicted {predicted(top)}), where `/async-db` gives {DB_POOL} per worker.", ("db",),
        key=f"{rng(top, 'requests')} requests with {top['workers']} workers at {top['connections']} connections")


def db_yield_dependency(runs) -> Claim:
    run = runs["db"]
    cells = db_cells(run, config="1w x 1t", endpoint="sync-db")
    g = max(cells, key=lambda c: c["connections"])
    fastapi = run.environment["packages"]["fastapi"]
    fewer = [c for c in cells if DB_POOL < c["connections"] < g["connections"]]
    holds = (ok(g) and g["bound_by"].startswith("database pool") and g["db_pool_peak_max"] == DB_POOL and bool(fewer)
             and all(c["requests_median"] == g["requests_median"] for c in fewer))
    return Claim(
        f"fastapi/fastapi#3205's shape no longer stalls with FastAPI {fastapi}.",
        holds,
        f"A `def` endpoint whose session comes from a sync `yield` dependency, one worker, {g['connections']} "
        f"connections against {DEFAULT_THREAD_LIMIT} threads and a pool of {DB_POOL}: {rng(g, 'requests')} requests "
        f"(predicted {predicted(g)}), {g['db_pool_peak_max']} connections at most, the same count as at "
        + ", ".join(str(c["connections"]) for c in fewer) + " connections. Why, from FastAPI's source (not measured "
        "here): the dependency's teardown, which closes the session and so returns its connection, runs under a "
        "limiter of its own (`contextmanager_in_threadpool` in `fastapi/concurrency.py`), not on one of the "
        "threads that the requests waiting for a connection hold.", ("db",),
        key=f"{rng(g, 'requests')} requests at {g['connections']} connections")


DB_FINDINGS = [db_def_pool, db_async_pool, db_pool_timeout, db_max_connections, db_blocking, db_yield_dependency]
FINDINGS += DB_FINDINGS
