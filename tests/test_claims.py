"""The README's findings are claims the committed data can refute: for every finding (and so for
every answer line, each a finding reworded), a copy of its committed runs with raw files altered
the way that would make its sentence false must turn it into "not reproduced in this run"."""

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT
from report import findings, readme
from report.findings import (
    Claim,
    Finding,
    concurrency,
    db,
    openloop,
    overhead,
    seed,
    servers,
    threads,
    upstream,
    worker_killed,
    workers,
)
from report.runs import reference_runs

RESULTS = ROOT / "results"
RUNS = reference_runs(RESULTS)


def copy_of(tmp_path: Path, name: str) -> Path:
    """A copy of the committed run of set NAME, alone in a results folder of its own."""
    results = tmp_path / "results"
    source = RUNS[name].run_dir
    shutil.copytree(source, results / source.name)
    return results / source.name


def evaluate(results: Path, finding: Finding) -> Claim:
    (claim,) = findings.evaluate(reference_runs(results), [finding])
    assert isinstance(claim, Claim), claim
    return claim


def scale_wrk_requests(cell: Path, factor: float) -> None:
    """wrk's request count and its requests per second, both times FACTOR."""
    wrk = cell / "wrk.txt"
    text = re.sub(
        r"^(\s+)(\d+) requests in",
        lambda m: f"{m.group(1)}{int(int(m.group(2)) * factor)} requests in",
        wrk.read_text(),
        flags=re.M,
    )
    wrk.write_text(
        re.sub(
            r"^Requests/sec:(\s+)([0-9.]+)",
            lambda m: f"Requests/sec:{m.group(1)}{float(m.group(2)) * factor:.2f}",
            text,
            flags=re.M,
        )
    )


def rate_of(cell: Path) -> float:
    return float(cell.name.split("-rate")[1].split("-")[0])


def edit_stats(cell: Path, change, directory: str = "stats") -> None:
    """CHANGE(data, index) on each worker's stop snapshot of the cell (the upstream's: upstream-stats)."""
    paths = sorted((cell / directory).glob("worker-*.stop.json"))
    for index, path in enumerate(paths):
        data = json.loads(path.read_text())
        change(data, index)
        path.write_text(json.dumps(data))


def scale_httperf_replies(cell: Path, factor: float) -> None:
    text = (cell / "httperf.txt").read_text()
    replies = int(re.search(r"2xx=(\d+)", text).group(1))
    (cell / "httperf.txt").write_text(text.replace(f"2xx={replies}", f"2xx={int(replies * factor)}"))


def spent_nothing(cell: Path) -> None:
    """The server's processes spent no CPU over the window: the stop sample is the start's."""
    stop, start = cell / "server.stop.json", json.loads((cell / "server.start.json").read_text())
    stop.write_text(json.dumps({**json.loads(stop.read_text()), "roles": start["roles"]}))


def every(run: Path, pattern: str) -> list[Path]:
    cells = sorted(run.glob(pattern))
    assert cells, pattern
    return cells


# ---------------------------------------------------------------- one alteration per finding

FLIPS: dict[Finding, Callable] = {}  # finding -> alter(copies: {set: run directory}), which makes its sentence false


def flip(finding):
    def register(alter):
        FLIPS[finding] = alter
        return alter

    return register


@flip(seed.CLIENT_BOUND_ASYNC)
def _(runs):  # the single worker answered half the waves: the client was not the limit
    for cell in every(runs["seed"], "*-1w1t-async-*"):
        scale_wrk_requests(cell, 0.5)


@flip(seed.ONE_WORKER_DEF)
def _(runs):  # 80 inside the handler at once: more than anyio's 40 threads
    for cell in every(runs["seed"], "*-1w1t-sync-*"):
        edit_stats(cell, lambda data, i: data["endpoints"]["sync"].update(peak=80))


@flip(seed.THREADS_FLAG)
def _(runs):  # --threads 4 answered three times as many
    for cell in every(runs["threads"], "*-1w4t-sync-*"):
        scale_wrk_requests(cell, 3)


@flip(threads.THREAD_LIMITER_KNOB)
def _(runs):  # THREAD_LIMIT 400 answered no more than 100 did
    for cell in every(runs["threads"], "*-limit400-*"):
        scale_wrk_requests(cell, 0.25)


@flip(seed.SPREAD_CAPS_DEF)
def _(runs):  # in one run every worker had one more inside the handler than its connections or threads allow
    edit_stats(
        every(runs["seed"], "*-4w1t-sync-*")[0],
        lambda data, i: data["endpoints"]["sync"].update(peak=data["endpoints"]["sync"]["peak"] + 1),
    )


@flip(concurrency.ASYNC_WINS)
def _(runs):  # above 40 connections `def` answered more than `async def`
    for cell in every(runs["concurrency"], "*-1w1t-sync-c100-r*"):
        scale_wrk_requests(cell, 3)


@flip(concurrency.WORKERS_FOR_ASYNC)
def _(runs):  # at 4000 connections 4 workers answered less than one
    for cell in every(runs["concurrency"], "*-4w1t-async-c4000-r*"):
        scale_wrk_requests(cell, 0.6)


@flip(concurrency.WORKERS_FOR_DEF)
def _(runs):  # a worker ran 41 at once: more than its 40 threads
    edit_stats(
        every(runs["concurrency"], "*-4w1t-sync-c1000-r*")[0], lambda data, i: data["endpoints"]["sync"].update(peak=41)
    )


@flip(concurrency.BLOCKING_ASYNC)
def _(runs):  # the blocking endpoint answered more than `def` at 10 connections
    for cell in every(runs["concurrency"], "*-1w1t-async-blocking-c10-r*"):
        scale_wrk_requests(cell, 10)


@flip(worker_killed.WORKER_KILLED)
def _(runs):  # one run without a WORKER TIMEOUT
    log = every(runs["worker-killed"], "*-r1")[0] / "server.log"
    log.write_text(log.read_text().replace("WORKER TIMEOUT", "worker timeout"))


@flip(overhead.LOOP_CLOCK_COST)
def _(runs):  # with the clock, the counted app answered half as many
    for cell in every(runs["overhead"], "*-c64-r*"):  # neither -nostats nor -noclock: the clock's cells
        scale_wrk_requests(cell, 0.5)


@flip(workers.LOOP_BURSTS)
def _(runs):  # the h11 worker answered every wave the limits allow, and more
    for cell in every(runs["workers"], "*-UvicornH11Worker-*"):
        scale_wrk_requests(cell, 1.5)


@flip(concurrency.COST_GROWS)
def _(runs):  # the calibration at the most connections measured no CPU at all
    most = max(
        every(runs["concurrency"], "calibration/1w1t-async-c*"), key=lambda c: int(c.name.split("-c")[1].split("-")[0])
    )
    spent_nothing(most)


@flip(upstream.SNIFFIO_COST)
def _(runs):  # the calibrations without sniffio measured no CPU at all
    for calibration in every(runs["upstream"], "calibration/1w1t-async-http-c*-sleep0"):
        if "-sniffio" not in calibration.name:
            spent_nothing(calibration)


@flip(overhead.THREAD_HOP)
def _(runs):  # one `async def` run answered fewer than the `def` runs
    scale_wrk_requests(every(runs["overhead"], "*-1w1t-async-*")[0], 0.5)


@flip(workers.WORKER_CLASS)
def _(runs):  # the `asgi` worker answered three times as many at 4000 connections, in every run
    for cell in every(runs["workers"], "*-c4000-asgi-*"):
        scale_wrk_requests(cell, 3)


@flip(servers.REUSE_PORT)
def _(runs):  # with --reuse-port one worker took 70 of 100 connections
    edit_stats(
        every(runs["servers"], "*-sync-c100-gunicorn-reuse-port*")[0],
        lambda data, i: data.update(connections=[70, 10, 10, 10][i], connections_answered=10),
    )


@flip(servers.WHICH_SERVER)
def _(runs):  # at no sleep one server's CPU was not the limit
    spent_nothing(every(runs["servers"], "*-async-c256-granian-sleep0-*")[0])


def one_call_more(data: dict, index: int) -> None:
    """The upstream's peak of calls in flight, one higher."""
    data["endpoints"]["async"]["peak"] += 1


@flip(upstream.POOL_LIMIT)
def _(runs):  # the upstream saw one call more than the pool allows
    edit_stats(every(runs["upstream"], "*-4w1t-async-http-c400-*")[0], one_call_more, "upstream-stats")


@flip(upstream.POOL_QUEUE_COSTS_CPU)
def _(runs):  # the queued cells cost no more CPU than a full pool
    for cell in every(runs["upstream"], "*-1w1t-async-http-c400-*"):
        spent_nothing(cell)


@flip(upstream.SYNC_HTTP)
def _(runs):  # the upstream saw one call more than the 40 threads allow
    edit_stats(every(runs["upstream"], "*-1w1t-sync-http-c400-*")[0], one_call_more, "upstream-stats")


@flip(upstream.POOL_RAISED)
def _(runs):  # HTTP_POOL=400 answered no more than the default pool
    for cell in every(runs["upstream"], "*-pool400-*"):
        scale_wrk_requests(cell, 0.3)


@flip(upstream.UPSTREAM_AGREES)
def _(runs):  # the upstream answered 1000 calls the front never made
    edit_stats(
        every(runs["upstream"], "*-1w1t-async-http-c100-*")[0],
        lambda data, i: data["endpoints"]["async"].update(completed=data["endpoints"]["async"]["completed"] + 1000),
        "upstream-stats",
    )


@flip(openloop.OPEN_LOOP)
def _(runs):  # `async def` left half the requests unanswered at the lowest rate
    lowest = min(rate_of(c) for c in every(runs["openloop"], "*-1w1t-async-rate*"))
    for cell in every(runs["openloop"], "*-1w1t-async-rate*"):
        if rate_of(cell) == lowest:
            scale_httperf_replies(cell, 0.5)


@flip(openloop.OPEN_LOOP_SPREAD)
def _(runs):  # timeouts below capacity although the workers took the connections evenly
    below = sorted({rate_of(c) for c in every(runs["openloop"], "*-4w1t-sync-rate*")})[1]  # 90% of capacity
    for cell in every(runs["openloop"], "*-4w1t-sync-rate*"):
        if rate_of(cell) == below:

            def even(data: dict, index: int, cell=cell) -> None:  # the stop count, so the start's stays
                start = json.loads((cell / "stats" / f"worker-{data['pid']}.start.json").read_text())
                data["connections"] = start["connections"] + 720

            edit_stats(cell, even)


@flip(db.DB_DEF_POOL)
def _(runs):  # a worker held one connection more than the pool
    edit_stats(
        every(runs["db"], "*-1w1t-sync-db-c100-r*")[0],
        lambda data, i: data["pools"]["sync"].update(peak_checked_out=16),
    )


@flip(db.DB_ASYNC_POOL)
def _(runs):  # `async def` answered more than the pool allows
    for cell in every(runs["db"], "*-1w1t-async-db-c400-r*"):
        scale_wrk_requests(cell, 1.5)


@flip(db.DB_POOL_TIMEOUT)
def _(runs):  # the app counted no pool timeout
    edit_stats(
        every(runs["db"], "*-1w1t-async-db-c100-dbtimeout*")[0],
        lambda data, i: data["endpoints"]["async-db"].update(pool_timeouts=0),
    )


@flip(db.DB_MAX_CONNECTIONS)
def _(runs):  # nothing was refused
    edit_stats(
        every(runs["db"], "*-8w1t-async-db-c400-r*")[0],
        lambda data, i: data["endpoints"]["async-db"].update(db_refused=0),
    )


@flip(db.DB_BLOCKING)
def _(runs):  # two requests ran at once in a worker
    edit_stats(
        every(runs["db"], "*-4w1t-async-db-blocking-c100-r*")[0],
        lambda data, i: data["endpoints"]["async-db-blocking"].update(peak=2),
    )


@flip(db.DB_YIELD_DEPENDENCY)
def _(runs):  # the `def` endpoint stalled at 1000 connections
    for cell in every(runs["db"], "*-1w1t-sync-db-c1000-r*"):
        scale_wrk_requests(cell, 0.3)


def copies(tmp_path: Path, finding: Finding) -> dict[str, Path]:
    """A copy of every committed run FINDING reads, each alone in one results folder."""
    return {name: copy_of(tmp_path, name) for name in finding.sets}


@pytest.mark.parametrize("finding", FLIPS, ids=lambda f: f.name)
def test_each_finding_turns_not_reproduced_when_its_data_say_otherwise(tmp_path, finding):
    assert finding.evaluate(RUNS).holds
    FLIPS[finding](copies(tmp_path, finding))
    claim = evaluate(tmp_path / "results", finding)
    assert not claim.holds and f"✗ {findings.NOT_REPRODUCED}:" in claim.markdown()


def test_every_finding_and_every_answer_line_has_a_flip():
    assert set(FLIPS) == set(findings.FINDINGS), {f.name for f in set(findings.FINDINGS) ^ set(FLIPS)}
    assert all(finding in FLIPS for finding, _ in readme.ANSWERS)


@pytest.mark.parametrize("index", range(len(readme.ANSWERS)))
def test_each_answer_line_turns_not_reproduced_with_its_finding(tmp_path, index):
    finding, _ = readme.ANSWERS[index]
    line = readme.answer(findings.evaluate(RUNS))[index]
    assert isinstance(line, Claim) and line.holds, line
    FLIPS[finding](copies(tmp_path, finding))
    after = readme.answer(findings.evaluate(reference_runs(tmp_path / "results")))[index]
    assert isinstance(after, Claim) and not after.holds, after


def test_the_def_claim_prints_what_the_altered_data_say(tmp_path):
    FLIPS[seed.ONE_WORKER_DEF](copies(tmp_path, seed.ONE_WORKER_DEF))
    claim = evaluate(tmp_path / "results", seed.ONE_WORKER_DEF)
    assert "never had more than 80 requests inside the handler" in claim.evidence


def test_readme_check_fails_on_a_claim_not_reproduced_unless_allowed(tmp_path, capsys):
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-async-*"):
        scale_wrk_requests(cell, 0.5)
    page = tmp_path / "README.md"
    page.write_text((ROOT / "README.md").read_text())
    assert readme.update(path=page, results=tmp_path / "results") == 1  # written, and refused
    assert f"report: {findings.NOT_REPRODUCED}: The original `/async` numbers" in capsys.readouterr().err
    assert findings.NOT_REPRODUCED in page.read_text()
    assert readme.update(check=True, allow_unreproduced=True, path=page, results=tmp_path / "results") == 0
