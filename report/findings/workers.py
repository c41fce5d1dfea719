"""The workers set's finding: UvicornWorker against gunicorn's own `asgi` worker."""

from dataclasses import dataclass
from typing import Any

from core.bound import Bound
from core.model import CLOSE
from core.servers import DEFAULT_WORKER_CLASS, H11_WORKER_CLASS

from ..records import Group
from ..runs import Run, Runs
from ..tables import format_seconds
from .base import Finding, Missing, Sentence
from .common import cells_where, find, pct, spread_of

OTHER_CLASS = "asgi"  # gunicorn's own ASGI worker, beside the default
LATE_SHARE = 0.5  # "the loop felt each wave": its latest wake-up at least this share of one wave's CPU


@dataclass
class WorkerClass:
    run: Run
    most: int | None  # the set's largest connection count with a sleep
    heavy: list[tuple[Group, Group]]  # (UvicornWorker, asgi) at that count and with no sleep
    modest: list[tuple[Group, Group]]  # the rest
    uvicorn_more: list[tuple[Group, Group]]  # heavy pairs where every UvicornWorker run is above every asgi run
    asgi_more: list[tuple[Group, Group]]  # and the reverse


def worker_class_cells(runs: Runs) -> WorkerClass:
    run = runs["workers"]
    pairs = [
        (
            g,
            find(
                run.groups,
                worker_class=OTHER_CLASS,
                workers=g.cell.workers,
                threads=g.cell.threads,
                endpoint=g.cell.endpoint,
                connections=g.cell.connections,
                sleep=g.cell.sleep,
            ),
        )
        for g in cells_where(run.groups, worker_class=DEFAULT_WORKER_CLASS)
    ]
    # Named by their parameters: the set's largest connection count and its no-sleep cells are the heavy ones.
    most = max((u.connections or 0 for u, _ in pairs if u.cell.sleep > 0), default=None)
    heavy = [(u, n) for u, n in pairs if u.cell.sleep == 0 or u.connections == most]
    modest = [(u, n) for u, n in pairs if (u, n) not in heavy]
    # "Differ": every run of one above every run of the other; anything less is within what runs vary by.
    return WorkerClass(
        run,
        most,
        heavy,
        modest,
        [(u, n) for u, n in heavy if u.requests.above(n.requests)],
        [(u, n) for u, n in heavy if n.requests.above(u.requests)],
    )


def worker_class_check(c: WorkerClass) -> bool:
    return bool(c.modest) and bool(c.heavy) and all(u.ok and n.ok for u, n in c.modest) and not c.asgi_more


def worker_class_sentence(c: WorkerClass) -> Sentence:
    def cell(u: Group) -> str:
        return f"{u.cell.label()} `/{u.cell.endpoint}`, {u.connections} connections, sleep {u.cell.sleep:g} s"

    return Sentence(
        f"Worker class: the same where the model explains both; at {c.most} connections and with no sleep, "
        "UvicornWorker answered more than gunicorn's `asgi` worker wherever the two differ beyond their runs.",
        "Each cell as the model predicts with both classes: "
        + "; ".join(f"{cell(u)}: {u.requests.text()} vs {n.requests.text()} ({u.bound_by})" for u, n in c.modest)
        + f". At the set's heavy cells, UvicornWorker vs `asgi`, on {c.run.here()}: "
        + "; ".join(
            f"{cell(u)}: {u.requests_per_sec.text()} vs {n.requests_per_sec.text()} req/s (UvicornWorker: "
            f"{u.bound_by}; `asgi`: {n.bound_by})"
            for u, n in c.heavy
        )
        + f". Every UvicornWorker run above every `asgi` run in {len(c.uvicorn_more)} of {len(c.heavy)} of them, every "
        f"`asgi` run above every UvicornWorker run in {len(c.asgi_more)}; the rest overlap."
        + (
            " Where a cell is marked unexplained, no CPU was measured saturated: see the open questions below."
            if any(r.verdict.bound is Bound.UNEXPLAINED for r in c.run.rows)
            else ""
        ),
        f"UvicornWorker above `asgi` in every run in {len(c.uvicorn_more)} of {len(c.heavy)} heavy cells, the "
        f"reverse in {len(c.asgi_more)}",
    )


WORKER_CLASS = Finding("worker_class", ("workers",), worker_class_cells, worker_class_check, worker_class_sentence)


@dataclass
class Bursts:
    run: Run
    h11: Group
    cost_s: float  # the calibrated CPU per request the model read
    wave_s: float  # one wave of the busiest worker at that cost: what the model stretches each cycle by


def bursts_cells(runs: Runs) -> Bursts:
    run = runs["workers"]
    g = find(run.groups, worker_class=H11_WORKER_CLASS)
    cost = g.rows[0].verdict.calibrated_cpu_per_request_s
    if cost is None:
        raise Missing("a calibration of the h11 worker")
    busiest = (spread_of(g.rows[0]) or [g.connections or 0])[0]  # one worker: every connection it took
    return Bursts(run, g, cost, busiest * cost)


def bursts_check(c: Bursts) -> bool:
    g = c.h11
    return (
        (g.requests_ok.median or 0) < (1 - CLOSE) * (g.predicted_requests or 0)  # fewer than the limits allow
        and g.cpu_bound == 0  # with no CPU saturated over the cell
        and all(r.verdict.burst_low is not None for r in g.rows)  # the model saw the bursts coming
        and g.ok  # and its band, one wave's CPU per cycle at most, held every run
        and (g.loop_late_max_s.low or 0) >= LATE_SHARE * c.wave_s  # the loop's own clock felt each wave
    )


def bursts_sentence(c: Bursts) -> Sentence:
    g = c.h11
    lows = sorted({r.verdict.burst_low for r in g.rows if r.verdict.burst_low is not None})
    return Sentence(
        "A loop busy in bursts costs answers though its CPU, averaged, is not saturated; the band one wave's "
        "calibrated CPU gives holds.",
        f"uvicorn's h11 worker, {g.cell.label()}, `/{g.cell.endpoint}` at {g.connections} connections, "
        f"{g.cell.sleep:g} s sleep, on {c.run.here()}: {g.requests_ok.text()} answered where the limits allow "
        f"{g.predicted_requests}; server CPU {pct(g.server_cpu_share)} of the machine, no CPU saturated. One wave, "
        f"its connections' requests arriving together, costs its one loop {format_seconds(c.wave_s)} at the "
        f"calibrated {format_seconds(c.cost_s)} per request (the cell's own: "
        f"{format_seconds(g.server_cpu_per_request_s.median)}), and the loop's clock woke up to "
        f"{format_seconds(g.loop_late_max_s.median)} late (p99 "
        f"{format_seconds(g.loop_late_p99_s.median)}). A cycle is the sleep plus at most that wave, so the model "
        f"predicts down to {', '.join(map(str, lows))}: "
        + ("every run within that band" if g.ok else f"{g.as_predicted} of {g.runs} runs within that band")
        + f". Latency {format_seconds(g.latency_avg_s.median)} against the {g.cell.sleep:g} s sleep. Once the "
        "connections drift apart in phase, the waves thin out, so a run can land anywhere in the band.",
        f"{g.requests_ok.text()} answered where the limits allow {g.predicted_requests}, CPU "
        f"{pct(g.server_cpu_share)}, loop up to {format_seconds(g.loop_late_max_s.median)} late",
    )


LOOP_BURSTS = Finding("loop_bursts", ("workers",), bursts_cells, bursts_check, bursts_sentence)

# This set's findings, in the order its page and the README list them.
FINDINGS: list[Finding[Any]] = [WORKER_CLASS, LOOP_BURSTS]
