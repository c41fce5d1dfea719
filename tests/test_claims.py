"""The README's findings are claims the committed data can refute: alter one raw file of a copy of
a committed run and the matching finding must turn into "not reproduced in this run"."""

import json
import re
import shutil
from pathlib import Path

from conftest import ROOT
from report import claims, readme

RESULTS = ROOT / "results"
RUNS = readme.reference_runs(RESULTS)


def copy_of(tmp_path: Path, name: str) -> Path:
    """A copy of the committed run of set NAME, alone in a results folder of its own."""
    results = tmp_path / "results"
    source = RUNS[name].run_dir
    shutil.copytree(source, results / source.name)
    return results / source.name


def evaluate(results: Path, finding) -> claims.Claim:
    (claim,) = claims.evaluate(readme.reference_runs(results), [finding])
    assert isinstance(claim, claims.Claim), claim
    return claim


def scale_wrk_requests(cell: Path, factor: float) -> None:
    wrk = cell / "wrk.txt"
    wrk.write_text(re.sub(r"^(\s+)(\d+) requests in", lambda m: f"{m.group(1)}{int(int(m.group(2)) * factor)} requests in",
                          wrk.read_text(), flags=re.M))


def rate_of(cell: Path) -> float:
    return float(cell.name.split("-rate")[1].split("-")[0])


def edit_stats(cell: Path, change) -> None:
    for path in sorted((cell / "stats").glob("worker-*.stop.json")):
        data = json.loads(path.read_text())
        change(data, sorted((cell / "stats").glob("worker-*.stop.json")).index(path))
        path.write_text(json.dumps(data))


def test_threads_claim_fails_when_threads_4_answers_three_times_as_many(tmp_path):
    assert claims.threads_flag(RUNS).holds
    run = copy_of(tmp_path, "threads")
    copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w4t-sync-*"):
        scale_wrk_requests(cell, 3)
    claim = evaluate(tmp_path / "results", claims.threads_flag)
    assert not claim.holds and f"✗ {claims.NOT_REPRODUCED}:" in claim.markdown()


def test_def_claim_fails_when_the_handler_ran_more_than_the_thread_limit(tmp_path):
    assert claims.one_worker_def(RUNS).holds
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-sync-*"):
        edit_stats(cell, lambda data, i: data["endpoints"]["sync"].update(peak=80))
    claim = evaluate(tmp_path / "results", claims.one_worker_def)
    assert not claim.holds and "never had more than 80 requests inside the handler" in claim.evidence


def test_client_bound_claim_fails_when_async_answers_half_the_waves(tmp_path):
    assert claims.client_bound_async(RUNS).holds
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-async-*"):
        scale_wrk_requests(cell, 0.5)
    assert not evaluate(tmp_path / "results", claims.client_bound_async).holds


def test_reuse_port_claim_fails_when_one_worker_takes_most_connections(tmp_path):
    assert claims.reuse_port(RUNS).holds
    run = copy_of(tmp_path, "servers")
    cells = [c for c in run.glob("*-sync-c100-gunicorn-reuse-port*")]
    assert cells
    edit_stats(cells[0], lambda data, i: data.update(connections=[70, 10, 10, 10][i], connections_answered=10))
    assert not evaluate(tmp_path / "results", claims.reuse_port).holds


def test_open_loop_claim_fails_when_async_leaves_requests_unanswered(tmp_path):
    assert claims.open_loop(RUNS).holds
    run = copy_of(tmp_path, "openloop")
    lowest = min(rate_of(c) for c in run.glob("*-1w1t-async-rate*"))
    for cell in run.glob("*-1w1t-async-rate*"):  # every repetition, so the median moves
        if rate_of(cell) == lowest:
            text = (cell / "httperf.txt").read_text()
            replies = int(re.search(r"2xx=(\d+)", text).group(1))
            (cell / "httperf.txt").write_text(text.replace(f"2xx={replies}", f"2xx={replies // 2}"))
    assert not evaluate(tmp_path / "results", claims.open_loop).holds


def test_readme_check_fails_on_a_claim_not_reproduced_unless_allowed(tmp_path, capsys):
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-async-*"):
        scale_wrk_requests(cell, 0.5)
    page = tmp_path / "README.md"
    page.write_text((ROOT / "README.md").read_text())
    assert readme.update(path=page, results=tmp_path / "results") == 1  # written, and refused
    assert f"report: {claims.NOT_REPRODUCED}: The original `/async` numbers" in capsys.readouterr().err
    assert claims.NOT_REPRODUCED in page.read_text()
    assert readme.update(check=True, allow_unreproduced=True, path=page, results=tmp_path / "results") == 0


def test_pool_claim_fails_when_the_upstream_saw_one_call_more_than_the_pool_allows(tmp_path):
    assert claims.pool_limit(RUNS).holds
    run = copy_of(tmp_path, "upstream")
    cell = sorted(run.glob("*-4w1t-async-http-c400-*"))[0]
    for path in (cell / "upstream-stats").glob("worker-*.stop.json"):
        data = json.loads(path.read_text())
        data["endpoints"]["async"]["peak"] += 1
        path.write_text(json.dumps(data))
    claim = evaluate(tmp_path / "results", claims.pool_limit)
    assert not claim.holds and f"✗ {claims.NOT_REPRODUCED}:" in claim.markdown()


def test_spread_claim_fails_when_timeouts_come_with_an_even_spread(tmp_path):
    assert claims.open_loop_spread(RUNS).holds
    run = copy_of(tmp_path, "openloop")
    below = sorted({rate_of(c) for c in run.glob("*-4w1t-sync-rate*")})[1]  # 90% of capacity

    for cell in run.glob("*-4w1t-sync-rate*"):
        if rate_of(cell) == below:
            def even(data: dict, index: int, cell=cell) -> None:  # the stop count, so the start's stays
                start = json.loads((cell / "stats" / f"worker-{data['pid']}.start.json").read_text())
                data["connections"] = start["connections"] + 720
            edit_stats(cell, even)
    assert not evaluate(tmp_path / "results", claims.open_loop_spread).holds


def test_pool_cpu_claim_fails_when_the_queued_cells_cost_no_more_cpu(tmp_path):
    assert claims.pool_queue_costs_cpu(RUNS).holds
    run = copy_of(tmp_path, "upstream")
    copy_of(tmp_path, "concurrency")
    for cell in run.glob("*-1w1t-async-http-c400-*"):  # every repetition: the server spent what it spent at start
        stop, start = cell / "server.stop.json", json.loads((cell / "server.start.json").read_text())
        stop.write_text(json.dumps({**json.loads(stop.read_text()), "roles": start["roles"]}))
    assert not evaluate(tmp_path / "results", claims.pool_queue_costs_cpu).holds


# ---------------------------------------------------------------- the database set


def refuted(tmp_path: Path, finding, alter) -> claims.Claim:
    """FINDING holds on the committed db run; on a copy that ALTER changed, what does it say?"""
    assert finding(RUNS).holds
    alter(copy_of(tmp_path, "db"))
    return evaluate(tmp_path / "results", finding)


def test_db_def_claim_fails_when_a_worker_held_one_connection_more_than_the_pool(tmp_path):
    def alter(run):
        edit_stats(sorted(run.glob("*-1w1t-sync-db-c100-r*"))[0],
                   lambda data, i: data["pools"]["sync"].update(peak_checked_out=16))
    claim = refuted(tmp_path, claims.db_def_pool, alter)
    assert not claim.holds and f"✗ {claims.NOT_REPRODUCED}:" in claim.markdown()


def test_db_async_claim_fails_when_async_answers_more_than_the_pool_allows(tmp_path):
    def alter(run):
        for cell in run.glob("*-1w1t-async-db-c400-r*"):  # every repetition, so the median moves
            scale_wrk_requests(cell, 1.5)
    assert not refuted(tmp_path, claims.db_async_pool, alter).holds


def test_db_timeout_claim_fails_when_the_app_counted_no_pool_timeout(tmp_path):
    def alter(run):
        edit_stats(sorted(run.glob("*-1w1t-async-db-c100-dbtimeout*"))[0],
                   lambda data, i: data["endpoints"]["async-db"].update(pool_timeouts=0))
    assert not refuted(tmp_path, claims.db_pool_timeout, alter).holds


def test_db_max_connections_claim_fails_when_nothing_was_refused(tmp_path):
    def alter(run):
        edit_stats(sorted(run.glob("*-8w1t-async-db-c400-r*"))[0],
                   lambda data, i: data["endpoints"]["async-db"].update(db_refused=0))
    assert not refuted(tmp_path, claims.db_max_connections, alter).holds


def test_db_blocking_claim_fails_when_two_requests_ran_at_once(tmp_path):
    def alter(run):
        edit_stats(sorted(run.glob("*-4w1t-async-db-blocking-c100-r*"))[0],
                   lambda data, i: data["endpoints"]["async-db-blocking"].update(peak=2))
    assert not refuted(tmp_path, claims.db_blocking, alter).holds


def test_db_yield_dependency_claim_fails_when_the_def_endpoint_stalls(tmp_path):
    def alter(run):
        for cell in run.glob("*-1w1t-sync-db-c1000-r*"):
            scale_wrk_requests(cell, 0.3)
    claim = refuted(tmp_path, claims.db_yield_dependency, alter)
    assert not claim.holds and "no longer stalls" in claim.title
