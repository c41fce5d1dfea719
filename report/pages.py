"""The per-set pages (results/<set>.md): the run, its findings, how they work, its open questions
and every cell, made from the committed runs by `python -m report readme`."""

import datetime
import shlex
from pathlib import Path

from core import files
from core.bound import Bound
from core.knobs import KNOBS
from core.model import WRK_STOP_GRANULARITY_S
from core.servers import GUNICORN_TIMEOUT_S, flag
from core.sets import REFERENCE, SETS, changed_knobs

from . import diagnosis, parse
from .findings import NOT_REPRODUCED, Claim
from .findings.common import plain, rows_where
from .records import CellResult, Group
from .runs import Run, Runs
from .tables import format_seconds, markdown_table

ROOT_COMMAND = "./benchmark.sh"


def machine(run: Run) -> str:
    env = run.environment
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    return (
        f"{env['cpu_count']} x {env['cpu_model']}, {env['os']}, somaxconn {env.get('somaxconn')}; "
        f"Python {env['python']}; {packages}; {env['wrk']}" + (f"; {env['httperf']}" if env.get("httperf") else "")
    )


def in_flight(r: CellResult) -> int:
    return r.measured.side.in_flight_at_stop if r.measured.side else 0


def evidence(runs: Runs) -> str:
    """wrk's quirks, each shown on a cell of the committed seed run."""
    if "seed" not in runs:
        return "Commit a seed reference run to generate this section.\n"
    seed = runs["seed"]
    slow = rows_where(seed.rows, **plain(1, 1, endpoint="sync"))[0]
    fast = rows_where(seed.rows, **plain(1, 1, endpoint="async"))[0]
    slow_m, fast_m, fast_v = slow.measured, fast.measured, fast.verdict
    slow_wrk = parse.load_wrk(files.cell_files(seed.run_dir, slow.cell.name).load_output("wrk"))
    dropped = max(seed.rows, key=in_flight)
    assert fast_v.predicted_requests is not None and fast_v.predicted_edge
    waves = fast_v.predicted_requests // fast_v.predicted_edge
    out = [
        f"- *Timeouts are completed requests.* In `{slow.cell.name}` wrk counts {slow_m.requests} requests and "
        f"{slow_m.timeouts} timeouts, responses that took {seed.timeout_s:g} s or more; yet its latency max is "
        f"{format_seconds(slow_m.latency_max_s)}. wrk's latency histogram stops at the timeout, so those "
        f"{slow_m.timeouts} responses are in the request count but not in the latency statistics, and the "
        f"average ({format_seconds(slow_m.latency_avg_s)}) understates what those clients waited.",
        f"- *Per-thread Req/Sec means little at a few requests per second.* wrk's per-thread Req/Sec average there "
        f"is {slow_wrk['thread_req_sec_avg']:g}, times {slow_wrk['threads']} threads "
        f"{slow_wrk['thread_req_sec_avg'] * slow_wrk['threads']:.1f}, against {slow_m.requests_per_sec:.2f} "
        f"Requests/sec overall: wrk samples each thread every {WRK_STOP_GRANULARITY_S * 1000:.0f} ms and only when "
        "it saw a response.",
        never_answered(runs),
        f"- *Requests in flight when wrk stops are dropped.* In `{dropped.cell.name}` wrk counts "
        f"{dropped.measured.requests}; at that moment the server had {in_flight(dropped)} requests received and not "
        f"yet answered (its snapshot when wrk exited). benchmark.sh then stops the server, so they are never finished.",
        f"- *The wave that ends exactly at the duration is partly counted.* {fast.cell.sleep:g} s requests and a "
        f"{fast.cell.duration:g} s run: {waves} waves end inside the run and the next ends just as it stops; wrk "
        f"stops up to {WRK_STOP_GRANULARITY_S * 1000:.0f} ms late, so it counted "
        f"{fast_m.requests - fast_v.predicted_requests} of that wave's {fast_v.predicted_edge} in `{fast.cell.name}`. "
        "The seed cells' counts over all runs: "
        + ", ".join(f"{g.cell.label()} /{g.cell.endpoint} {g.requests.text()}" for g in seed.groups)
        + ".",
    ]
    return "\n".join(out) + "\n"


def never_answered(runs: Runs) -> str:
    if "concurrency" not in runs:
        return "- *Connections that are never answered are in no wrk figure* (shown on the concurrency run)."
    run = runs["concurrency"]
    cell = max(rows_where(run.rows, workers=1, endpoint="sync"), key=lambda r: r.measured.connections or 0)
    m = cell.measured
    return (
        f"- *Connections that are never answered are in no wrk figure.* In `{cell.cell.name}` of the concurrency "
        f"run, {m.never_answered} of {m.connections} connections got no answer in the whole "
        f"{cell.cell.duration:g} s (the server's own count), yet wrk reports {m.timeouts} timeouts and a "
        f"latency average of {format_seconds(m.latency_avg_s)}: its latency and timeouts cover only "
        f"answered requests."
    )


def replay(run: Run) -> str:
    """The command that replays a run: the knobs that differ from its set's defaults, then its arguments."""
    texts = {name: run.parameters[name.lower()] for name in KNOBS if name.lower() in run.parameters}
    knobs = changed_knobs(run.parameters["set"], texts)
    argv = [ROOT_COMMAND if Path(word).name == "benchmark.sh" else word for word in run.document.get("argv", [])]
    return (
        shlex.join(["env", *(f"{k}={v}" for k, v in knobs.items())] if knobs else [])
        + (" " if knobs else "")
        + shlex.join(argv)
    )


# ---------------------------------------------------------------- the per-set pages


PAGES = [entry.name for entry in REFERENCE]
GENERATED = "Generated by `python -m report readme` from the committed runs: edit `report/`, not this page."


def page_of(name: str) -> str:
    return f"results/{name}.md"


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    return "".join(c for c in title.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def anchor(claim: Claim) -> str:
    """A short, stable anchor for a finding on its page: its name."""
    return claim.finding.replace("_", "-")


def link(claim: Claim) -> str:
    return f"{page_of(finding_page(claim))}#{anchor(claim)}"


def finding_page(claim: Claim) -> str:
    return claim.sets[0]


def took(run: Run) -> str:
    started, ended = run.document.get("started"), run.document.get("ended")
    if not (started and ended):
        return "-"
    seconds = (datetime.datetime.fromisoformat(ended) - datetime.datetime.fromisoformat(started)).total_seconds()
    return f"{seconds / 60:.0f} min"


def page(name: str, runs: Runs, found: list[Claim]) -> str:
    entry = next(entry for entry in REFERENCE if entry.name == name)
    purpose = SETS[name].purpose if name in SETS else entry.purpose
    head = f"# `{name}`: {purpose}\n\n{GENERATED}\n"
    if name not in runs:
        return head + f"\nNo reference run committed yet: `{entry.command()}`.\n"
    run = runs[name]
    p = run.parameters
    load = (
        f"httperf, {p['duration']} per rate, --timeout {p['timeout']}"
        if name in SETS and SETS[name].open_loop
        else f"wrk -t {p['wrk_threads']} -d {p['duration']} --timeout {p['timeout']}"
    )
    parts = [
        head,
        f"Run [`{run.run_dir.name}`]({run.run_dir.name}/): "
        + ("" if SETS[entry.set].your_app else f"sleep {p['sleep_seconds']} s, ")
        + load
        + ("" if p["scale"] == "1" else f", all divided by SCALE={p['scale']}")
        + f"; {p['repeat']} runs per cell"
        + (", pinned (load generator on CPU 0)" if p.get("pin") == "1" else "")
        + f"; started {run.document.get('started')}, took {took(run)}. Reproduce: `{replay(run)}`.\n",
        f"Machine and versions: {machine(run)}.\n",
        f"![{name}]({run.run_dir.name}/{files.PLOT})\n",
    ]
    diagnosed = diagnosis.text(diagnosis.diagnose(run.run_dir, run.groups, int(run.environment["cpu_count"])))
    if diagnosed:  # a run of your app: where each path stops, as its diagnosis.md says
        lines = ("#" + line if line.startswith("## ") else line for line in diagnosed.strip().splitlines())
        parts.append("## Diagnosis\n\n" + "\n".join(lines) + "\n")
    mine = [c for c in found if finding_page(c) == name]
    if mine:
        parts.append("## Findings\n")
        for claim in mine:
            status = "" if claim.holds else f"✗ {NOT_REPRODUCED}: "
            parts.append(f'<a id="{anchor(claim)}"></a>\n### {claim.title}\n\n{status}{claim.evidence}\n')
    notes = how(name, run)
    if notes:
        parts.append(notes)
    questions = open_questions(run)
    if questions:
        parts.append(f'<a id="open-questions"></a>\n## Open questions\n\n{OPEN}\n\n' + "\n".join(questions) + "\n")
    if name == "seed":
        parts.append("## Reading wrk's numbers\n\n" + evidence(runs))
    parts.append("## Every cell\n\n" + markdown_table(run.groups))
    return "\n".join(parts)


def how(name: str, run: Run) -> str:
    """What a set's findings rest on that the README leaves to its page."""
    if name == "upstream":
        version = run.environment["packages"].get("httpcore")
        return (
            "## How the pool works\n\nEvery time a request joins or leaves httpx's pool, httpcore"
            + (f" {version}" if version else "")
            + " walks every queued request and every connection (`_assign_requests_to_connections`, "
            "`httpcore/_async/connection_pool.py`; known upstream: encode/httpcore#1035), so the CPU a request "
            "costs grows with the queue: the findings above measure how much. Size the pool for the "
            "concurrency you expect per worker.\n"
        )
    if name == "worker-killed":
        sleep = float(run.parameters["sleep_seconds"])
        timeout = flag(run.parameters["gunicorn_cmd_args"], "--timeout", GUNICORN_TIMEOUT_S)
        return (
            "## Why a blocked worker is killed\n\ngunicorn's arbiter kills a worker silent for `--timeout` "
            "(`arbiter.py`, `murder_workers`). UvicornWorker notifies from uvicorn's loop, which checks only "
            "every tenth 0.1 s tick (`uvicorn/server.py`, `on_tick`) and only once `timeout / 2` has passed "
            f"(`spawn_worker`): when every request blocks the loop for {sleep:g} s, ten ticks take at least "
            f"{10 * sleep:g} s, "
            + (
                f"longer than the {timeout:g} s timeout, though no single block reached it."
                if 10 * sleep > timeout
                else f"within the {timeout:g} s timeout: this run's kills need another cause."
            )
            + "\n"
        )
    if name == "db":
        return (
            "## How the database is run\n\nThe `db` set starts its own PostgreSQL (found on PATH, by "
            "`pg_config`, in `/usr/lib/postgresql/*/bin` or brew's `postgresql@17`, else installed): a throwaway "
            "cluster made once per run in a temporary directory, as `postgres` (else `nobody`) when run as root, "
            "on a private socket and on 127.0.0.1 with a random password, removed on every way out. Each endpoint "
            "runs `SELECT pg_sleep(SLEEP_SECONDS)` through SQLAlchemy 2: `/sync-db` a `def` with a session from a "
            "`yield` dependency (psycopg 3), `/async-db` an `AsyncSession` (asyncpg), `/async-db-blocking` the "
            "sync session inside `async def`.\n"
        )
    return ""


OPEN = (
    "Runs the summary marks unexplained: below the model's prediction (or, with no sleep, without one) and "
    "no CPU measured saturated. Neither the model nor the CPU accounts for them, and why is not known yet. "
    "py-spy's flame graph of the server processes during one more run of the cell, taken after the measured "
    "ones so that the profiler's CPU is in no figure (`PROFILE=1`), is linked where the run recorded it."
)


def unexplained(run: Run) -> list[tuple[Group, list[CellResult]]]:
    """Each group with a run that the model and the measured CPU leave unexplained, with those runs."""
    out = []
    for g in run.groups:
        rows = [r for r in g.rows if r.verdict.bound is Bound.UNEXPLAINED]
        if rows:
            out.append((g, rows))
    return out


def open_questions(run: Run) -> list[str]:
    lines = []
    for g, rows in unexplained(run):
        svgs = [files.cell_files(run.run_dir, r.cell.name, profiling=True).profile() for r in g.rows]
        svgs = [svg for svg in svgs if svg.exists()]
        profiles = (
            ", ".join(
                f"[`profiles/{path.parent.name}`]({run.run_dir.name}/profiles/{path.parent.name}/{path.name})"
                for path in svgs
            )
            if svgs
            else "none recorded" + ("" if run.parameters.get("profile") == "1" else " (taken without PROFILE=1)")
        )
        load = f"{g.connections} connections" if not g.cell.open_loop else f"{g.cell.rate:g}/s"
        lines.append(
            f"- {g.cell.label()} `/{g.cell.endpoint}`, {load}, sleep {g.cell.sleep:g} s: {len(rows)} of "
            f"{g.runs} runs. "
            + "; ".join(f"`{r.cell.name}`: {r.verdict.bound_by}" for r in rows)
            + f". Profile: {profiles}."
        )
    return lines
