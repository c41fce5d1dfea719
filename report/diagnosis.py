"""Your own app's diagnosis (the app set, APP or --app): for each path, what it is, the time one
request takes alone (S, at 1 connection), every limit the counters found with its size, and at
each config and number of connections the answers per second a closed loop gives with those
limits and S (Little's law, counted as wrk counts: the requests at once in each whole wave of S
that ends in the window, under the CPU's ceiling) beside what was measured, the limit that binds
with its evidence, and the knob that moves it. Its figures are measured, or predicted from
measured ones; beyond the limit it names only the knob that moves it. (The per-cell table has no
prediction for these cells: core/model.py's needs a known wait.)"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import files
from core.bound import Bound
from core.endpoints import ANYIO_THREAD_LIMIT
from core.model import CPU_CLOSE, even_spread, format_spread, waves
from core.settings import wrapped

from . import parse
from .records import Group
from .tables import format_seconds

MOVED_BY = {
    Bound.CLIENT: "CONNECTIONS (the load, not the app)",
    Bound.THREADS: "THREAD_LIMIT (anyio's thread limiter), or the handler as `async def`",
    Bound.BLOCKED_LOOP: "the blocking call off the loop (a `def` handler, or anyio.to_thread), or workers",
    Bound.DB_POOL: "the pool's pool_size + max_overflow (create_engine), or workers",
    Bound.HTTP_POOL: "httpx.Limits(max_connections=...) of the client, or workers",
    Bound.CPU: "workers (CONFIGS), up to the machine's cores",
    Bound.SPREAD: "SERVER=gunicorn-reuse-port (the kernel spreads the connections), or a limit per worker "
    "above the connections one worker takes",
    Bound.STARVED: "pool_size + max_overflow + THREAD_LIMIT above the connections a worker holds (then "
    "each request can finish), or one `def` step per request that opens its own session",
}
# A request alone that keeps its worker's loop from waking for this share of S, but spends less than
# that share of S on the CPU, holds the loop while it waits: one request at a time per worker.
HELD_SHARE = 0.5


@dataclass
class Limit:
    per_worker: float
    name: str
    bound: Bound
    evidence: str


@dataclass
class Point:
    group: Group
    measured_per_s: float
    predicted_per_s: float
    bound: Bound
    why: str
    wrk_per_s: float | None = None  # where measured is the server's count: wrk's, past its timeout


@dataclass
class PathDiagnosis:
    path: str
    kind: str
    route: str | None  # the route's template, where the app's router names it
    service_s: float | None  # S: one request alone
    cpu_per_request_s: float | None  # the server's CPU per answer where one worker answered the most
    cpu_from: Group | None
    groups: list[Group] = field(default_factory=list)  # its cells, the one S is timed in first
    limits: list[Limit] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    # The most cores one worker used: over 1, its threads ran outside the GIL (hashing, say), and
    # the CPU's ceiling is the machine's, not one core per worker.
    cores_one_worker: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # every answer's, warm-ups included
    errors: dict[str, int] = field(default_factory=dict)  # exceptions that escaped the app

    @property
    def handler_kind(self) -> str:
        """`def`, `async def`, or ASGI (not a FastAPI route)."""
        return next((k for k in ("async def", "def") if self.kind.startswith(k + " ")), "ASGI")

    @property
    def binding(self) -> list[Point]:
        """At each config, the point with the most connections: where the load is heaviest."""
        heaviest: dict[str, Point] = {}
        for p in self.points:
            config = p.group.cell.label()
            if config not in heaviest or (p.group.connections or 0) > (heaviest[config].group.connections or 0):
                heaviest[config] = p
        return list(heaviest.values())


def stop_snapshots(run_dir: Path, group: Group) -> list[dict[str, Any]]:
    return [
        s
        for row in group.rows
        for s in parse.worker_snapshots(files.CellFiles(run_dir / row.cell.name).stats(), files.STOP)
    ]


def route_of(snapshots: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    return next((s["routes"][path] for s in snapshots if (s.get("routes") or {}).get(path)), None)


def kind_of(route: dict[str, Any] | None) -> str:
    if route is None or route.get("handler") is None:
        return "ASGI (not a FastAPI route)"
    text = f"{route['handler']['kind']} {route['handler']['name']}"
    sync = [d["name"] for d in route["dependencies"] if d["kind"] == "def"]
    return text + (f", `def` dependencies: {', '.join(sync)}" if sync else "")


def counted(snapshots: list[dict[str, Any]], section: str, path: str) -> dict[str, int]:
    """A path's statuses or errors, summed over the workers' last snapshots."""
    total: dict[str, int] = {}
    for s in snapshots:
        for name, n in (s.get(section) or {}).get(path, {}).items():
            total[name] = total.get(name, 0) + n
    return dict(sorted(total.items()))


def limits_of(snapshots: list[dict[str, Any]], d: "PathDiagnosis", mine: list[Group], alone: Group) -> list[Limit]:
    """Every limit the counters show for the path, per worker, with what shows it."""
    kind = d.kind
    found: list[Limit] = []
    threads = [s["thread_limiter"] for s in snapshots if s.get("thread_limiter")]
    if kind.startswith("def"):  # (a `def` dependency of an `async def` holds a thread only as it runs)
        size = threads[0]["size"] if threads else ANYIO_THREAD_LIMIT
        peak = max((t["peak_borrowed"] for t in threads), default=0)
        found.append(Limit(size, f"thread limiter: {size}/worker", Bound.THREADS, f"peak {peak} borrowed"))
    late, cpu, s = alone.loop_late_max_s.median, alone.server_cpu_per_request_s.median, d.service_s
    if s and late is not None and late >= HELD_SHARE * s and (cpu or 0) < HELD_SHARE * s:
        stuck: dict[str, float] = {}
        for g in mine:
            for where, seconds in g.loop_stuck_s.items():
                stuck[where] = stuck.get(where, 0.0) + seconds
        held = f"alone, its loop woke up to {format_seconds(late)} late at {format_seconds(cpu)} of CPU"
        if stuck:
            where = max(stuck, key=lambda k: stuck[k])
            held += f"; stuck {stuck[where]:.2f} s in {where}"
        found.append(Limit(1, "blocked event loop: 1/worker", Bound.BLOCKED_LOOP, held))
    for name, pool in _used(snapshots, "pools", "peak_checked_out"):
        if pool.get("size") is None or (pool.get("max_overflow") or 0) < 0:
            continue  # a pool with no bound (NullPool, max_overflow=-1): no limit
        size = pool["size"] + pool["max_overflow"]
        found.append(
            Limit(
                size,
                f"database pool {pool.get('size')}+{pool.get('max_overflow')}: {size}/worker",
                Bound.DB_POOL,
                f"{name}: peak {pool['peak_checked_out']} checked out",
            )
        )
    for name, pool in _used(snapshots, "http_pools", "peak_in_pool"):
        size = pool["max_connections"]
        found.append(
            Limit(
                size, f"HTTP client pool: {size}/worker", Bound.HTTP_POOL, f"{name}: peak {pool['peak_in_pool']} in it"
            )
        )
    return found


def _used(snapshots: list[dict[str, Any]], section: str, peak: str) -> list[tuple[str, dict[str, Any]]]:
    """Each pool any worker used in the window, with its largest peak."""
    pools: dict[str, dict[str, Any]] = {}
    for s in snapshots:
        for name, pool in s.get(section, {}).items():
            if pool.get(peak) and pool[peak] >= pools.get(name, {}).get(peak, 0):
                pools[name] = pool
    return sorted(pools.items())


def predict(d: PathDiagnosis, g: Group, cpus: int, snapshots: list[dict[str, Any]]) -> Point | None:
    """The closed loop for G from S and the limits: the requests each worker holds at once (its
    connections, or its smallest limit) in each wave of S, under the CPU's ceiling; and where far fewer were
    answered with every thread and every pooled connection taken at the end, the two starved each other."""
    if not d.service_s or g.connections is None:
        return None
    seen = next((c for c in g.connections_per_worker if c), None) or even_spread(g.connections, g.cell.workers)
    # A held loop accepts no connection: those the counters have not seen are shared out evenly.
    unseen = max(0, g.connections - sum(seen)) / len(seen)
    spread = [c + unseen for c in seen]
    limit = min(d.limits, key=lambda limit: limit.per_worker, default=None)
    at_once = sum(min(c, limit.per_worker) if limit else c for c in spread)
    # wrk counts the answers that end inside its window: whole waves of S (core/model.py's count).
    per_s, bound = at_once * waves(d.service_s, g.cell.duration)[0] / g.cell.duration, Bound.CLIENT
    why = f"client: {plural(g.connections, 'connection')} / S"
    even = sum(min(c, limit.per_worker) if limit else c for c in even_spread(g.connections, g.cell.workers))
    if limit and at_once < min(g.connections, even):  # as core/model.py: a worker took more than its share
        bound, why = Bound.SPREAD, f"connection spread {format_spread(seen)} ({limit.name})"
    elif limit and g.connections > at_once:
        bound, why = limit.bound, limit.name
    wrk_cores = (g.load_cpu_s.median or 0) / (g.window_s.median or 1)
    left = max(cpus - wrk_cores, 0.1)  # (wrk on every core would leave none: a ceiling, not a crash)
    cores = left if d.cores_one_worker > GIL_FREE_CORES else min(g.cell.workers, left)
    if d.cpu_per_request_s and cores / d.cpu_per_request_s < per_s:
        per_s, bound = cores / d.cpu_per_request_s, Bound.CPU
        why = f"CPU: {cores:.2f} cores / {format_seconds(d.cpu_per_request_s)} per request"
    measured = g.requests_per_sec.median or 0.0
    # The server's own answers in the window: the client's count also misses those its timeout dropped.
    answered = [n for n in g.server_completed if n is not None]
    served_per_s = sorted(answered)[len(answered) // 2] / (g.window_s.median or 1) if answered else measured
    if served_per_s < STARVED_SHARE * per_s and (stalled := starved(snapshots, max(spread))):
        bound, why = Bound.STARVED, stalled
    # Queued behind a limit, a request waits its worker's connections / limit waves of S; past wrk's
    # timeout, wrk drops it and asks again while the server still answers it: what the path gives
    # is then the server's count, not wrk's.
    held = [c for c in spread if c]
    wait = max(((c / min(c, limit.per_worker) if limit else 1) for c in held), default=0) * d.service_s
    if wait > g.cell.timeout and answered and measured < (1 - CPU_CLOSE) * served_per_s:
        why += f"; each request waits {wait:.3g} s, past wrk's {g.cell.timeout} s timeout: measured is what the"
        why += f" server answered (wrk counted {per_second(measured)}/s)"
        return Point(g, served_per_s, per_s, bound, why, measured)
    return Point(g, measured, per_s, bound, why)


# The server answered far fewer than the limits allow, with every thread and every pooled connection taken.
STARVED_SHARE = 0.5
GIL_FREE_CORES = 1.2  # one worker above this many cores ran threads outside the GIL


def starved(snapshots: list[dict[str, Any]], connections: float) -> str:
    """Where, at the window's end, some worker had every thread borrowed and a pool fully checked out,
    with at least as many connections as the two hold together: requests can then hold every
    connection while they wait for a thread for their next `def` step, while every thread waits for a
    connection (until the pool's timeout)."""
    for s in snapshots:
        threads = s.get("thread_limiter") or {}
        for name, pool in (s.get("pools") or {}).items():
            if pool.get("size") is None or (pool.get("max_overflow") or 0) < 0 or not threads:
                continue
            size = pool["size"] + pool["max_overflow"]
            full = threads.get("borrowed") == threads["size"] and pool.get("checked_out") == size
            if full and connections >= size + threads["size"]:
                return (
                    f"stalled: at the end all {threads['size']} threads borrowed and all {size} connections of "
                    f"{name} checked out, with {connections:.0f} connections a worker, at least the {size} + "
                    f"{threads['size']} they hold"
                )
    return ""


# Below this many answers in its window, one request more or less moves 1 / (req/s) by over 5%.
FEW_ANSWERS = 20


def service_time(alone: Group) -> float | None:
    """S, from the cell at 1 connection: one over its answers a second (each request's cycle, the
    client's share in it); from wrk's mean latency when the window held too few answers to count."""
    rps, latency = alone.requests_per_sec.median, alone.latency_avg_s.median
    if rps and rps * (alone.window_s.median or 0) >= FEW_ANSWERS:
        return 1 / rps
    return latency or (1 / rps if rps else None)


def diagnose(run_dir: Path, groups: list[Group], cpus: int) -> list[PathDiagnosis]:
    diagnoses = []
    for path in dict.fromkeys(g.cell.path for g in groups if g.cell.path):
        mine = [g for g in groups if g.cell.path == path]
        alone = min(mine, key=lambda g: (g.cell.workers, g.connections or 0))
        at_stop = {id(g): stop_snapshots(run_dir, g) for g in mine}
        snapshots = [s for g in mine for s in at_stop[id(g)]]
        # The CPU a request costs, from the one worker that answered the most (its loop the busiest),
        # as the calibration pass takes it for app.py's cells: alone, the counters' own idle work weighs.
        one_worker = [g for g in mine if g.cell.workers == 1]
        busiest = max(one_worker, key=lambda g: g.requests_per_sec.median or 0, default=alone)
        cpu = busiest.server_cpu_per_request_s.median
        route = route_of(snapshots, path)
        d = PathDiagnosis(
            path, kind_of(route), route.get("route") if route else None, service_time(alone), cpu, busiest
        )
        d.cores_one_worker = max(
            ((g.server_cpu_s.median or 0) / (g.window_s.median or 1) for g in one_worker), default=0
        )
        d.statuses, d.errors = counted(snapshots, "statuses", path), counted(snapshots, "errors", path)
        d.groups = [alone, *(g for g in mine if g is not alone)]  # S's cell first
        d.limits = limits_of(snapshots, d, mine, alone)
        d.points = [p for g in mine if (p := predict(d, g, cpus, at_stop[id(g)]))]
        diagnoses.append(d)
    return diagnoses


def text(diagnoses: list[PathDiagnosis]) -> str:
    """The diagnosis as markdown (diagnosis.md); the terminal prints the same lines, wrapped."""
    out = []
    for d in diagnoses:
        route = f"; route `{d.route}`" if d.route and d.route != d.path else ""
        out.append(f"## `{d.path}`: {d.kind}{route}")
        out.append("")
        alone = f"S = {format_seconds(d.service_s)} alone" if d.service_s else "no answer alone"
        cpu = ""
        if d.cpu_per_request_s and d.cpu_from:
            cpu = (
                f"; {format_seconds(d.cpu_per_request_s)} of server CPU per request (1 worker, "
                f"{plural(d.cpu_from.connections or 0, 'connection')})"
            )
        memory = max((g.rss_mib_per_worker_median or 0 for g in d.groups), default=0)
        out.append(f"- {alone}{cpu}" + (f"; up to {memory:.0f} MiB per worker" if memory else ""))
        if d.cores_one_worker > GIL_FREE_CORES:
            out.append(
                f"- 1 worker used up to {d.cores_one_worker:.2f} cores (threads outside the GIL, or processes of "
                "its own): the CPU's ceiling is the machine's"
            )
        answers = ", ".join(f"{status} x{n}" for status, n in d.statuses.items())
        errors = ", ".join(f"{name} x{n}" for name, n in d.errors.items())
        out.append(f"- answers (warm-ups included): {answers or 'none'}" + (f"; escaped: {errors}" if errors else ""))
        for limit in d.limits:
            out.append(f"- limit: {limit.name}; {limit.evidence}")
        if not d.limits:
            out.append("- no limit found by the counters (threads, a held loop, pools)")
        for p in d.binding:
            g = p.group
            out.append(
                f"- binds at {g.cell.label()}, {g.connections} connections: {p.why}; "
                f"{per_second(p.predicted_per_s)} req/s predicted, {per_second(p.measured_per_s)} measured "
                f"{close_mark(p)}; "
                f"what moves it: {MOVED_BY.get(p.bound, '-')}"
            )
        for p in d.points:
            late = p.group.timeouts.median
            late_text = f", {late:g} past wrk's {p.group.cell.timeout} s timeout" if late else ""
            if p.group is d.groups[0]:  # where S was timed: its prediction is itself, nothing to check
                out.append(f"  - {p.group.cell.workers}w c={p.group.connections}: S is timed here")
                continue
            out.append(
                f"  - {p.group.cell.workers}w c={p.group.connections}: "
                f"{per_second(p.measured_per_s)} req/s{late_text}, "
                f"predicted {per_second(p.predicted_per_s)} {close_mark(p)} ({p.why})"
            )
        out.append("")
    return "\n".join(out)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def per_second(rate: float) -> str:
    """A rate with four figures, whole above 1000 (not 1.343e+04)."""
    return f"{rate:.0f}" if rate >= 1000 else f"{rate:.4g}"


def close_mark(p: Point) -> str:
    """✓ within 15%: S is itself one cell's measurement, so a prediction carries its noise (as the
    CPU-bound cells' predictions carry their calibration's, CPU_CLOSE)."""
    return "✓" if abs(p.measured_per_s - p.predicted_per_s) <= CPU_CLOSE * p.predicted_per_s else "✗"


def terminal(markdown: str) -> str:
    """MARKDOWN's lines in TERMINAL_WIDTH columns, each continued on indented lines."""
    indent = "      "
    return "\n".join(part for line in markdown.splitlines() for part in (wrapped(line, indent) if line else [""]))


def write(run_dir: Path, groups: list[Group], cpus: int) -> None:
    """diagnosis.md in RUN_DIR for a run of your app (nothing for app.py's sets)."""
    diagnoses = diagnose(run_dir, groups, cpus)
    if diagnoses:
        (run_dir / files.DIAGNOSIS_MD).write_text(f"# {run_dir.name}: where each path stops\n\n{text(diagnoses)}")
