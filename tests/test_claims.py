"""The README's findings are claims the committed data can refute: alter one raw file of a copy of
a committed run and the matching finding must turn into "not reproduced in this run"."""

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from report import claims, readme

RESULTS = ROOT / "results"
RUNS = readme.reference_runs(RESULTS) if RESULTS.exists() else {}
pytestmark = pytest.mark.skipif(not RUNS, reason="no reference runs committed yet")


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


def edit_stats(cell: Path, change) -> None:
    for path in sorted((cell / "stats").glob("worker-*.stop.json")):
        data = json.loads(path.read_text())
        change(data, sorted((cell / "stats").glob("worker-*.stop.json")).index(path))
        path.write_text(json.dumps(data))


def needs(*names):
    missing = [n for n in names if n not in RUNS]
    return pytest.mark.skipif(bool(missing), reason=f"needs the {missing} reference runs")


@needs("seed", "threads")
def test_threads_claim_fails_when_threads_4_answers_three_times_as_many(tmp_path):
    assert claims.threads_flag(RUNS).holds
    run = copy_of(tmp_path, "threads")
    copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w4t-sync-*"):
        scale_wrk_requests(cell, 3)
    claim = evaluate(tmp_path / "results", claims.threads_flag)
    assert not claim.holds and f"✗ {claims.NOT_REPRODUCED}:" in claim.markdown()


@needs("seed")
def test_def_claim_fails_when_the_handler_ran_more_than_the_thread_limit(tmp_path):
    assert claims.one_worker_def(RUNS).holds
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-sync-*"):
        edit_stats(cell, lambda data, i: data["endpoints"]["sync"].update(peak=80))
    claim = evaluate(tmp_path / "results", claims.one_worker_def)
    assert not claim.holds and "never had more than 80 requests inside the handler" in claim.evidence


@needs("seed")
def test_client_bound_claim_fails_when_async_answers_half_the_waves(tmp_path):
    assert claims.client_bound_async(RUNS).holds
    run = copy_of(tmp_path, "seed")
    for cell in run.glob("*-1w1t-async-*"):
        scale_wrk_requests(cell, 0.5)
    assert not evaluate(tmp_path / "results", claims.client_bound_async).holds


@needs("servers")
def test_reuse_port_claim_fails_when_one_worker_takes_most_connections(tmp_path):
    assert claims.reuse_port(RUNS).holds
    run = copy_of(tmp_path, "servers")
    cells = [c for c in run.glob("*-sync-c100-gunicorn-reuse-port*")]
    assert cells
    edit_stats(cells[0], lambda data, i: data.update(connections=[70, 10, 10, 10][i], connections_answered=10))
    assert not evaluate(tmp_path / "results", claims.reuse_port).holds


@needs("openloop")
def test_open_loop_claim_fails_when_async_leaves_requests_unanswered(tmp_path):
    assert claims.open_loop(RUNS).holds
    run = copy_of(tmp_path, "openloop")
    (cell,) = [c for c in run.glob("*-1w1t-async-rate*") if c.name.split("-")[0] == min(
        p.name.split("-")[0] for p in run.glob("*-1w1t-async-rate*"))]
    text = (cell / "httperf.txt").read_text()
    replies = int(re.search(r"2xx=(\d+)", text).group(1))
    (cell / "httperf.txt").write_text(text.replace(f"2xx={replies}", f"2xx={replies // 2}"))
    assert not evaluate(tmp_path / "results", claims.open_loop).holds


@needs("seed")
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
