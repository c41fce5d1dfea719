"""Turn a run directory's raw files into a summary that says why each number is what it is.

    python report.py RUN_DIR            write summary.{csv,json,md} and plot.png, print the table
    python report.py readme [--check]   regenerate (or check) README.md's generated sections from results/
    python report.py brief WRK_FILE     one line of key figures (used by benchmark.sh)
    python report.py describe RUN_DIR k=v ...   write run.json (parameters + environment)

Everything here reads only the raw files benchmark.sh saved, so it can be re-run at any time.
"""

import csv
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_THREAD_LIMIT = 40  # anyio's default CapacityLimiter for to_thread.run_sync
LARGE_SPREAD = 0.10  # repetitions further apart than this (of the median), edge wave aside, get flagged
WELL_BELOW = 0.90  # measured / predicted under this, with no other limit to blame, means CPU
CLOSE = 0.03  # a count within 3% of the predicted band is "as predicted"
# wrk's threads look at the stop flag only every RECORD_INTERVAL_MS = 100 ms (src/wrk.c, record_rate),
# so a run lasts up to 0.1 s past -d and a wave ending right at the duration may be partly counted.
WRK_STOP_GRANULARITY_S = 0.1

# ---------------------------------------------------------------- wrk output


class WrkParseError(ValueError):
    pass


# wrk's units (src/units.c): latency us/ms/s/m/h, bytes 1024-based, per-thread rates metric.
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
BYTE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
METRIC_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _with_unit(text: str, units: dict, what: str) -> float:
    match = re.fullmatch(r"(-?[0-9.]+)([A-Za-z]*)", text)
    if not match or match.group(2) not in units:
        raise ValueError(f"cannot read {what} {text!r}")
    return float(match.group(1)) * units[match.group(2)]


def seconds(text: str) -> float:
    return _with_unit(text, TIME_UNITS, "a time")


def byte_count(text: str) -> float:
    return _with_unit(text, BYTE_UNITS, "a size")


def metric(text: str) -> float:
    return _with_unit(text, METRIC_UNITS, "a number")


WRK_LINES = [
    ("header", r"Running (\S+) test @ (\S+)"),
    ("setup", r"\s+(\d+) threads and (\d+) connections"),
    ("columns", r"\s+Thread Stats\s+Avg\s+Stdev\s+Max\s+\+/- Stdev"),
    ("latency", r"\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+"),
    ("req_sec", r"\s+Req/Sec\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+"),
    ("distribution", r"\s+Latency Distribution"),
    ("percentile", r"\s+(\d+)%\s+(\S+)"),
    ("totals", r"\s+(\d+) requests in (\S+), (\S+) read"),
    ("socket_errors", r"\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    ("non_2xx_3xx", r"\s+Non-2xx or 3xx responses: (\d+)"),
    ("requests_per_sec", r"Requests/sec:\s+(\S+)"),
    ("transfer_per_sec", r"Transfer/sec:\s+(\S+)"),
]
REQUIRED_LINES = ["header", "setup", "latency", "req_sec", "totals", "requests_per_sec", "transfer_per_sec"]


def parse_wrk(text: str, name: str = "wrk output") -> dict:
    """Parse wrk 4's text report; every figure in seconds, bytes or plain counts."""
    seen: dict[str, tuple] = {}
    percentiles: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        for kind, pattern in WRK_LINES:
            match = re.fullmatch(pattern, line.rstrip())
            if match:
                break
        else:
            raise WrkParseError(f"{name}:{number}: not a line of wrk's report: {line.strip()!r}")
        try:
            if kind == "percentile":
                percentiles[match.group(1)] = seconds(match.group(2))
            else:
                seen[kind] = match.groups()
        except ValueError as error:
            raise WrkParseError(f"{name}:{number}: {error}") from None
    missing = [kind for kind in REQUIRED_LINES if kind not in seen]
    if missing:
        raise WrkParseError(f"{name}: truncated or not wrk output (no {', '.join(missing)} line)")
    try:
        errors = [int(n) for n in seen.get("socket_errors", (0, 0, 0, 0))]
        latency = [seconds(v) for v in seen["latency"][:3]]
        return {
            "duration_s": seconds(seen["header"][0]),
            "url": seen["header"][1],
            "threads": int(seen["setup"][0]),
            "connections": int(seen["setup"][1]),
            "latency_avg_s": latency[0],
            "latency_stdev_s": latency[1],
            "latency_max_s": latency[2],
            "latency_percentiles_s": percentiles or None,
            "thread_req_sec_avg": metric(seen["req_sec"][0]),
            "requests": int(seen["totals"][0]),
            "runtime_s": seconds(seen["totals"][1]),
            "bytes_read": byte_count(seen["totals"][2]),
            "errors_connect": errors[0],
            "errors_read": errors[1],
            "errors_write": errors[2],
            "timeouts": errors[3],
            "non_2xx_3xx": int(seen.get("non_2xx_3xx", (0,))[0]),
            "requests_per_sec": float(seen["requests_per_sec"][0]),
            "transfer_per_sec": byte_count(seen["transfer_per_sec"][0]),
        }
    except ValueError as error:
        raise WrkParseError(f"{name}: {error}") from None


def load_wrk(path: Path) -> dict:
    return parse_wrk(path.read_text(errors="replace"), str(path))


def error_count(wrk: dict) -> int:
    """Socket errors other than timeouts (those are completed requests), plus 4xx/5xx answers."""
    return wrk["errors_connect"] + wrk["errors_read"] + wrk["errors_write"] + wrk["non_2xx_3xx"]


def brief(path: Path) -> str:
    wrk = load_wrk(path)
    errors = error_count(wrk)
    return (
        f"{wrk['requests']} requests  {wrk['requests_per_sec']:.2f} req/s  "
        f"latency avg {format_seconds(wrk['latency_avg_s'])}  "
        f"{wrk['timeouts']} timeouts  {errors} errors"
    )


# ---------------------------------------------------------------- the model


@dataclass
class Prediction:
    requests: int | None  # None when nothing but the CPU limits the cell (sleep 0)
    edge: int  # up to this many more: the next wave ends within wrk's stop granularity
    concurrency: int  # requests in the server at once
    bound_by: str
    client_connections: int  # what wrk really opens: threads x (connections // threads)


def format_spread(connections_per_worker: list[int]) -> str:
    return "/".join(map(str, connections_per_worker))


def even_spread(connections: int, workers: int) -> list[int]:
    return [connections // workers + (1 if i < connections % workers else 0) for i in range(workers)]


def per_worker_limit(endpoint: str, thread_limit: int) -> float:
    # `def` runs in anyio's thread pool (thread_limit at once per worker, whatever gunicorn's
    # --threads says); a blocking `async def` holds the loop so a worker runs one at a time;
    # a real `async def` is bounded only by the connections it holds.
    return {"sync": thread_limit, "async-blocking": 1}.get(endpoint, math.inf)


def predict(
    endpoint: str,
    workers: int,
    connections: int,
    sleep: float,
    duration: float,
    thread_limit: int = DEFAULT_THREAD_LIMIT,
    wrk_threads: int = 4,
    connections_per_worker: list[int] | None = None,
) -> Prediction:
    """Little's law for a closed loop: concurrency N, each request S seconds, N/S req/s.

    wrk keeps one request in flight per connection and drops those unfinished at the end,
    so it counts N x (number of S-long waves that end strictly inside the duration).
    """
    client = wrk_threads * (connections // wrk_threads)
    spread = connections_per_worker if connections_per_worker is not None else even_spread(client, workers)
    limit = per_worker_limit(endpoint, thread_limit)
    server = int(sum(min(c, limit) for c in spread))
    even_server = sum(min(c, limit) for c in even_spread(client, workers))
    concurrency = min(client, server)
    if server < min(client, even_server):
        bound_by = "connection spread " + format_spread(spread)
    elif client <= server:
        bound_by = f"client: {client} connections"
    elif endpoint == "sync":
        bound_by = f"thread limiter: {thread_limit}/worker"
    else:
        bound_by = "blocked event loop: 1/worker"
    if sleep <= 0:
        return Prediction(None, 0, concurrency, "CPU (no sleep)", client)
    waves = math.ceil(round(duration / sleep, 9)) - 1
    next_wave_ends = (waves + 1) * sleep
    edge = concurrency if next_wave_ends - duration < WRK_STOP_GRANULARITY_S else 0
    return Prediction(concurrency * waves, edge, concurrency, bound_by, client)


# ---------------------------------------------------------------- one run directory

CELL_FIELDS = [
    "cell", "round", "workers", "threads", "worker_class", "thread_limit", "sleep",
    "endpoint", "connections", "wrk_threads", "duration", "timeout", "stats",
]


def read_cells(run_dir: Path) -> list[dict]:
    with open(run_dir / "cells.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def worker_stats(cell_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cell_dir / "stats").glob("worker-*.json"))]


def summarise_cell(run_dir: Path, cell: dict) -> dict | None:
    cell_dir = run_dir / cell["cell"]
    if not (cell_dir / "wrk.txt").exists():
        return None
    wrk = load_wrk(cell_dir / "wrk.txt")
    endpoint, workers = cell["endpoint"], int(cell["workers"])
    thread_limit = int(cell["thread_limit"]) if cell["thread_limit"] != "default" else DEFAULT_THREAD_LIMIT
    sleep, duration = float(cell["sleep"]), float(cell["duration"])
    model = dict(endpoint=endpoint, workers=workers, connections=int(cell["connections"]), sleep=sleep,
                 duration=duration, thread_limit=thread_limit, wrk_threads=int(cell["wrk_threads"]))
    predicted = predict(**model)
    stats = worker_stats(cell_dir)
    log = (cell_dir / "gunicorn.log").read_text(errors="replace") if (cell_dir / "gunicorn.log").exists() else ""
    row = {
        "cell": cell["cell"], "round": int(cell["round"]), "config": config_name(cell),
        "workers": workers, "threads": int(cell["threads"]), "worker_class": cell["worker_class"],
        "thread_limit": cell["thread_limit"], "endpoint": endpoint, "sleep_s": sleep,
        "duration_s": duration, "connections": predicted.client_connections,
        "requests": wrk["requests"], "requests_per_sec": wrk["requests_per_sec"],
        "latency_avg_s": wrk["latency_avg_s"], "latency_max_s": wrk["latency_max_s"],
        "timeouts": wrk["timeouts"],
        "errors": error_count(wrk),
        "predicted_requests": predicted.requests,
        "predicted_edge": predicted.edge,
        # What wrk should print: the predicted count over the duration (not the steady N/S rate,
        # since wrk drops the wave still in flight when it stops).
        "predicted_requests_per_sec": (predicted.requests / duration if predicted.requests is not None else None),
        "measured_over_predicted": (round(wrk["requests"] / predicted.requests, 3) if predicted.requests else None),
        "bound_by": predicted.bound_by,
        "worker_timeouts": log.count("WORKER TIMEOUT"),
        "threads_warning": "does not use threads" in log,
        "connections_per_worker": None, "peak_in_handler_per_worker": None,
        "server_completed": None, "thread_limit_seen": None,
        "expected_requests": predicted.requests, "expected_edge": predicted.edge, "as_predicted": None,
    }
    if stats:
        per_worker = sorted(((s["connections"], s["endpoints"].get(endpoint, {}).get("peak", 0)) for s in stats), reverse=True)
        connections_per_worker = [c for c, _ in per_worker]
        row["connections_per_worker"] = connections_per_worker
        row["peak_in_handler_per_worker"] = [p for _, p in per_worker]
        row["server_completed"] = sum(s["endpoints"].get(endpoint, {}).get("completed", 0) for s in stats)
        row["thread_limit_seen"] = sorted({s["thread_limit"] for s in stats})
        # Only when every worker reported and every connection reached the app: an overloaded
        # worker may not have started a request from each of its connections yet.
        if len(stats) == workers and sum(connections_per_worker) >= predicted.client_connections:
            # The same model, fed with how the connections really landed on the workers.
            observed = predict(**model, connections_per_worker=connections_per_worker)
            row["bound_by"] = observed.bound_by
            row["expected_requests"], row["expected_edge"] = observed.requests, observed.edge
    expected = row["expected_requests"]
    if expected is not None:
        row["as_predicted"] = (1 - CLOSE) * expected <= wrk["requests"] <= (1 + CLOSE) * (expected + row["expected_edge"])
    if expected and wrk["requests"] < WELL_BELOW * expected:
        row["bound_by"] = "CPU / server overhead (below every other limit)"
        if row["worker_timeouts"]:
            row["bound_by"] = f"worker killed ({row['worker_timeouts']}x WORKER TIMEOUT)"
    return row


def config_name(cell: dict) -> str:
    name = f"{cell['workers']}w x {cell['threads']}t"
    if cell["worker_class"] != "uvicorn_worker.UvicornWorker":
        name += f" {cell['worker_class']}"
    if cell["thread_limit"] != "default":
        name += f" limit {cell['thread_limit']}"
    return name


def group_key(row: dict) -> tuple:
    return (row["config"], row["endpoint"], row["connections"], row["sleep_s"], row["duration_s"])


def summarise_groups(rows: list[dict]) -> list[dict]:
    """One line per distinct cell, over its repetitions: median with min and max."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    summary = []
    for runs in groups.values():
        first = runs[0]
        requests = [r["requests"] for r in runs]
        rates = [r["requests_per_sec"] for r in runs]
        median_requests = statistics.median(requests)
        bounds = {}
        for r in runs:
            bounds[r["bound_by"]] = bounds.get(r["bound_by"], 0) + 1
        # Spread beyond what the edge wave alone explains (it may or may not land in a run).
        unexplained = max(requests) - min(requests) - first["predicted_edge"]
        peaks = [max(r["peak_in_handler_per_worker"]) for r in runs if r["peak_in_handler_per_worker"]]
        summary.append({
            "config": first["config"], "endpoint": first["endpoint"], "connections": first["connections"],
            "workers": first["workers"], "sleep_s": first["sleep_s"], "duration_s": first["duration_s"],
            "runs": len(runs),
            "requests_median": median_requests, "requests_min": min(requests), "requests_max": max(requests),
            "requests_per_sec_median": statistics.median(rates),
            "requests_per_sec_min": min(rates), "requests_per_sec_max": max(rates),
            "latency_avg_s_median": statistics.median(r["latency_avg_s"] for r in runs),
            "latency_max_s_max": max(r["latency_max_s"] for r in runs),
            "timeouts_median": statistics.median(r["timeouts"] for r in runs),
            "errors_max": max(r["errors"] for r in runs),
            "predicted_requests": first["predicted_requests"],
            "predicted_edge": first["predicted_edge"],
            "predicted_requests_per_sec": first["predicted_requests_per_sec"],
            "measured_over_predicted": (round(median_requests / first["predicted_requests"], 3)
                                        if first["predicted_requests"] else None),
            "bound_by": "; ".join(f"{b} ({n}/{len(runs)})" if len(runs) > 1 else b for b, n in bounds.items()),
            "large_spread": unexplained > LARGE_SPREAD * median_requests,
            "connections_per_worker": [r["connections_per_worker"] for r in runs],
            "peak_in_handler_max": max(peaks) if peaks else None,
            "server_completed": [r["server_completed"] for r in runs],
            "worker_timeouts": sum(r["worker_timeouts"] for r in runs),
            "expected_with_spread": [r["expected_requests"] for r in runs],
            "as_predicted": sum(bool(r["as_predicted"]) for r in runs),
        })
    return summary


def format_seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} us"


def format_range(median, low, high, digits=0) -> str:
    text = f"{median:.{digits}f}"
    return text if low == high else f"{text} ({low:.{digits}f}-{high:.{digits}f})"


MARKDOWN_COLUMNS = [
    "config", "endpoint", "conns", "requests", "req/s", "latency avg", "latency max", "timeouts",
    "errors", "predicted", "measured / predicted", "bound by", "conns per worker",
    "peak in handler", "server completed",
]


def markdown_table(groups: list[dict]) -> str:
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for g in groups:
        spreads = g["connections_per_worker"]
        cells = [
            g["config"], f"/{g['endpoint']}", str(g["connections"]),
            format_range(g["requests_median"], g["requests_min"], g["requests_max"]),
            format_range(g["requests_per_sec_median"], g["requests_per_sec_min"], g["requests_per_sec_max"], 2),
            format_seconds(g["latency_avg_s_median"]), format_seconds(g["latency_max_s_max"]),
            f"{g['timeouts_median']:g}", str(g["errors_max"]),
            "-" if g["predicted_requests"] is None else str(g["predicted_requests"])
            + (f" (+≤{g['predicted_edge']} edge)" if g["predicted_edge"] else "")
            + (f"; with the spread seen: {', '.join(map(str, g['expected_with_spread']))}"
               if any(e != g["predicted_requests"] for e in g["expected_with_spread"]) else ""),
            "-" if g["measured_over_predicted"] is None else f"{g['measured_over_predicted']:.2f} "
            + ("✓" if g["as_predicted"] == g["runs"] else f"✗ ({g['as_predicted']}/{g['runs']} as predicted)")
            + (" ⚠ spread" if g["large_spread"] else ""),
            g["bound_by"] + (f"; {g['worker_timeouts']}x WORKER TIMEOUT" if g["worker_timeouts"] and "killed" not in g["bound_by"] else ""),
            ", ".join(format_spread(s) for s in spreads if s) or "-",
            "-" if g["peak_in_handler_max"] is None else str(g["peak_in_handler_max"]),
            ", ".join(str(c) for c in g["server_completed"] if c is not None) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarise_run(run_dir: Path) -> tuple[list[dict], list[dict]]:
    rows = [row for cell in read_cells(run_dir) if (row := summarise_cell(run_dir, cell))]
    if not rows:
        raise SystemExit(f"report.py: {run_dir}: no cell has a wrk.txt yet")
    return rows, summarise_groups(rows)


def write_summary(run_dir: Path) -> str:
    rows, groups = summarise_run(run_dir)
    with open(run_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    (run_dir / "summary.json").write_text(json.dumps({"cells": rows, "groups": groups}, indent=2) + "\n")
    table = markdown_table(groups)
    title = run_dir.name + (" (INCOMPLETE)" if (run_dir / "INCOMPLETE").exists() else "")
    (run_dir / "summary.md").write_text(f"# {title}\n\n{table}")
    plot(run_dir, groups)
    return table


# ---------------------------------------------------------------- plot


def plot(run_dir: Path, groups: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_line: dict[tuple, list[dict]] = {}
    for g in groups:
        by_line.setdefault((g["config"], g["endpoint"]), []).append(g)
    sweep = any(len({g["connections"] for g in line}) > 1 for line in by_line.values())
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    if sweep:
        for (config, endpoint), line in by_line.items():
            line.sort(key=lambda g: g["connections"])
            x = [g["connections"] for g in line]
            drawn = ax.plot(x, [g["requests_per_sec_median"] for g in line], marker="o", label=f"{config} /{endpoint}")
            ceiling = [g["predicted_requests_per_sec"] for g in line]
            if all(c is not None for c in ceiling):
                ax.plot(x, ceiling, linestyle="--", color=drawn[0].get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("wrk connections (log scale)")
        ax.set_title(f"{run_dir.name}: measured (solid) vs predicted (dashed)")
    else:
        configs = list(dict.fromkeys(g["config"] for g in groups))
        endpoints = list(dict.fromkeys(g["endpoint"] for g in groups))
        width = 0.8 / len(endpoints)
        for i, endpoint in enumerate(endpoints):
            for j, config in enumerate(configs):
                g = next((g for g in groups if g["config"] == config and g["endpoint"] == endpoint), None)
                if g is None:
                    continue
                x = j + (i - (len(endpoints) - 1) / 2) * width
                median = g["requests_per_sec_median"]
                ax.bar(x, median, width * 0.9, color=f"C{i}", label=f"/{endpoint}" if j == 0 else None,
                       yerr=[[median - g["requests_per_sec_min"]], [g["requests_per_sec_max"] - median]],
                       capsize=3)
                if g["predicted_requests_per_sec"] is not None:
                    first = (i, j) == (0, 0)
                    ax.hlines(g["predicted_requests_per_sec"], x - width / 2, x + width / 2, colors="black",
                              linestyles="--", label="predicted: complete waves" if first else None)
                    if g["predicted_edge"]:
                        ax.bar(x, g["predicted_edge"] / g["duration_s"], width, bottom=g["predicted_requests_per_sec"],
                               fill=False, hatch="//", edgecolor="gray", linewidth=0,
                               label="+ the wave ending as wrk stops" if first else None)
        ax.set_xticks(range(len(configs)), configs)
        ax.set_xlabel("gunicorn workers x threads")
        ax.set_title(f"{run_dir.name}: measured req/s (bars: median, whiskers: min-max) vs predicted")
    ax.set_ylabel("requests per second")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    ax.title.set_fontsize("medium")
    fig.tight_layout()
    path = run_dir / "plot.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- run.json


def environment() -> dict:
    packages = ["fastapi", "starlette", "anyio", "uvicorn", "uvicorn-worker", "gunicorn", "uvloop", "httptools"]
    cpu_model = platform.processor()
    if Path("/proc/cpuinfo").exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu_model = names[0] if names else cpu_model
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in packages},
        "wrk": _command_output([os.environ.get("WRK", "wrk"), "-v"]).split(" Copyright")[0],
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "git_commit": _command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "git_dirty": bool(_command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])),
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def describe(run_dir: Path, params: list[str]) -> None:
    parameters = dict(p.split("=", 1) for p in params)
    document = {"parameters": parameters, "environment": environment()}
    (run_dir / "run.json").write_text(json.dumps(document, indent=2) + "\n")


# ---------------------------------------------------------------- README

# The original experiment's published figures (requests in 1 min, req/s, latency avg, timeouts),
# quoted for comparison; see README.md, "The original experiment".
ORIGINAL = {
    ("1w x 1t", "sync"): (200, 3.33, "18.04 s", 50), ("1w x 1t", "async"): (500, 8.33, "10.01 s", 0),
    ("1w x 4t", "sync"): (200, 3.33, "17.80 s", 53), ("1w x 4t", "async"): (500, 8.33, "10.00 s", 0),
    ("4w x 1t", "sync"): (500, 8.33, "10.00 s", 0), ("4w x 1t", "async"): (500, 8.33, "10.00 s", 0),
    ("4w x 4t", "sync"): (500, 8.33, "10.01 s", 0), ("4w x 4t", "async"): (500, 8.33, "10.00 s", 0),
}
SETS = ["seed", "concurrency", "threads", "workers", "overhead"]


def markers(section: str) -> tuple[str, str]:
    return (f"<!-- BEGIN generated by report.py readme: edit report.py, not this ({section}) -->",
            f"<!-- END generated ({section}) -->")


@dataclass
class Run:
    """A committed run directory, summarised once for every section that quotes it."""

    run_dir: Path
    rows: list[dict]
    groups: list[dict]
    parameters: dict
    environment: dict
    timeout_s: float  # wrk's --timeout as the cells ran it (after SCALE)

    @classmethod
    def load(cls, run_dir: Path) -> "Run":
        run = json.loads((run_dir / "run.json").read_text())
        rows, groups = summarise_run(run_dir)
        timeout_s = float(read_cells(run_dir)[0]["timeout"])
        return cls(run_dir, rows, groups, run["parameters"], run["environment"], timeout_s)


def reference_runs(results: Path) -> dict[str, Run]:
    """The newest complete run of each set whose name ends in -reference."""
    runs = {}
    for run_dir in sorted(results.glob("*-reference")):
        if (run_dir / "INCOMPLETE").exists() or not (run_dir / "run.json").exists():
            continue
        runs[json.loads((run_dir / "run.json").read_text())["parameters"]["set"]] = run_dir
    return {name: Run.load(run_dir) for name, run_dir in runs.items()}


def find(groups: list[dict], **where) -> dict:
    matches = [g for g in groups if all(g[k] == v for k, v in where.items())]
    if len(matches) != 1:
        raise SystemExit(f"report.py: expected one cell with {where}, found {len(matches)}")
    return matches[0]


def comparison_table(groups: list[dict]) -> str:
    lines = [
        "| config | endpoint | original: requests | req/s | latency avg | timeouts "
        "| ours: requests (median, min-max) | req/s | latency avg | timeouts | predicted | bound by | conns per worker |",
        "|" + "---|" * 13,
    ]
    for g in groups:
        original = ORIGINAL.get((g["config"], g["endpoint"]))
        if not original:
            continue
        lines.append("| " + " | ".join([
            g["config"], f"/{g['endpoint']}", str(original[0]), f"{original[1]:.2f}", original[2], str(original[3]),
            format_range(g["requests_median"], g["requests_min"], g["requests_max"]),
            f"{g['requests_per_sec_median']:.2f}", format_seconds(g["latency_avg_s_median"]),
            f"{g['timeouts_median']:g}",
            f"{g['predicted_requests']}" + (f" (+≤{g['predicted_edge']})" if g["predicted_edge"] else ""),
            g["bound_by"], ", ".join(format_spread(s) for s in g["connections_per_worker"] if s),
        ]) + " |")
    return "\n".join(lines) + "\n"


def machine(run: Run) -> str:
    env = run.environment
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    return (f"{env['cpu_count']} x {env['cpu_model']}, {env['os']}; Python {env['python']}; {packages}; "
            f"{env['wrk']}")


def results_section(runs: dict[str, Run]) -> str:
    parts = []
    machines = {machine(run) for run in runs.values()}
    one_machine = len(machines) == 1
    if one_machine:
        parts.append(f"Machine and versions for every run: {machines.pop()}.\n")
    for name in SETS:
        if name not in runs:
            parts.append(f"### {name}\n\nNo reference run committed yet: `./benchmark.sh --set {name} --label reference`.\n")
            continue
        run = runs[name]
        run_dir, params, groups = run.run_dir, run.parameters, run.groups
        scale = "" if params["scale"] == "1" else f", all divided by SCALE={params['scale']}"
        parts.append(
            f"### {name}\n\n"
            f"Run [`{run_dir.name}`](results/{run_dir.name}/): sleep {params['sleep_seconds']} s, wrk -t "
            f"{params['wrk_threads']} -d {params['duration']} --timeout {params['timeout']}{scale}; "
            f"{params['repeat']} run(s) per cell."
            + ("" if one_machine else f" Machine: {machine(run)}.") + "\n\n"
            + (comparison_table(groups) + "\nEvery cell of our run:\n\n" if name == "seed" else "")
            + markdown_table(groups)
            + f"\n![{name}](results/{run_dir.name}/plot.png)\n"
        )
    return "\n".join(parts)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}"


def findings(runs: dict[str, Run], results: Path) -> str:
    """The conclusions, each with the figures of the committed runs filled in."""
    if any(name not in runs for name in SETS):
        return "Run every set with `--label reference` to generate this section.\n"
    seed, sweep, threads, workers, overhead = (runs[name].groups for name in SETS)
    out = []

    a1 = find(seed, config="1w x 1t", endpoint="async")
    a4 = find(seed, config="4w x 4t", endpoint="async")
    out.append(
        f"- **The original `/async` numbers were flat because the client was the limit, not the server.** "
        f"100 connections that each wait {a1['sleep_s']:g} s can complete at most 100 requests per wave: "
        f"{a1['predicted_requests']} in the {a1['duration_s']:g} s run (+ up to {a1['predicted_edge']} from the "
        f"wave that ends as wrk stops). We measured {a1['requests_median']:g} with 1 worker and "
        f"{a4['requests_median']:g} with 4x4; the single worker had up to {a1['peak_in_handler_max']} "
        f"requests sleeping at once, i.e. every connection the client had. More workers cannot help a "
        f"server that is idle."
    )
    s1 = find(seed, config="1w x 1t", endpoint="sync")
    out.append(
        f"- **1 worker with `def` gave 3.33 req/s because of anyio's 40-thread limiter.** FastAPI runs a "
        f"`def` endpoint in anyio's thread pool, at most 40 at once per worker: 40 / {s1['sleep_s']:g} s = "
        f"{40 / s1['sleep_s']:g} req/s steady, {s1['predicted_requests']} requests in the run. We measured "
        f"{s1['requests_median']:g} ({s1['requests_per_sec_median']:.2f} req/s), and the server never had more "
        f"than {s1['peak_in_handler_max']} requests inside the handler. The other "
        f"{s1['connections'] - s1['peak_in_handler_max']} connections queue, which is why latency averages "
        f"{format_seconds(s1['latency_avg_s_median'])} and {s1['timeouts_median']:g} responses (median) exceed "
        f"wrk's {runs['seed'].timeout_s:g} s timeout."
    )
    s14 = find(seed, config="1w x 4t", endpoint="sync")
    t1 = find(threads, config="1w x 1t", endpoint="sync")
    t4 = find(threads, config="1w x 4t", endpoint="sync")
    out.append(
        f"- **`--threads` does nothing for an ASGI worker.** gunicorn's `threads` setting only affects the "
        f"gthread worker; uvicorn's worker never reads it. 1x1 vs 1x4 `/sync`: {s1['requests_median']:g} vs "
        f"{s14['requests_median']:g} requests; at {t1['connections']} connections "
        f"{t1['requests_per_sec_median']:.1f} vs {t4['requests_per_sec_median']:.1f} req/s, and the peak "
        f"inside the handler stays at {t4['peak_in_handler_max']} with `--threads 4`."
    )
    l100 = find(threads, config="1w x 1t limit 100", endpoint="sync")
    l400 = find(threads, config="1w x 1t limit 400", endpoint="sync")
    out.append(
        f"- **The knob that matters for `def` is the thread limiter.** With `THREAD_LIMIT` 40 / 100 / 400 "
        f"(one worker, {t1['connections']} connections, {t1['sleep_s']:g} s sleep): "
        f"{t1['requests_per_sec_median']:.1f} / {l100['requests_per_sec_median']:.1f} / "
        f"{l400['requests_per_sec_median']:.1f} req/s, peaks {t1['peak_in_handler_max']} / "
        f"{l100['peak_in_handler_max']} / {l400['peak_in_handler_max']} inside the handler."
    )
    spreads = []
    for config in ("4w x 1t", "4w x 4t"):
        runs_of_cell = [r for r in runs["seed"].rows if r["config"] == config and r["endpoint"] == "sync"]
        spreads += [f"{format_spread(r['connections_per_worker'])} -> {r['requests']}" for r in runs_of_cell]
    out.append(
        f"- **4 workers with `def` match `async def` only when wrk's connections spread over the workers.** "
        f"Each worker has its own 40-thread limiter, so what counts is how many of the 100 keep-alive "
        f"connections each worker accepted. Connections per worker -> requests, in our 4-worker `/sync` runs: "
        f"{'; '.join(spreads)}. A worker holding more than 40 connections caps the run below 500; all 100 on "
        f"one worker would give the 1-worker result."
    )
    top = max((g for g in sweep if g["workers"] == 1 and g["endpoint"] == "async"), key=lambda g: g["connections"])
    top_sync = find(sweep, config="1w x 1t", endpoint="sync", connections=top["connections"])
    out.append(
        f"- **Where `async def` wins: when the client is not the bottleneck.** One worker, {top['connections']} "
        f"connections, {top['sleep_s']:g} s sleep: `/async` {top['requests_per_sec_median']:.0f} req/s "
        f"(predicted {top['predicted_requests_per_sec']:.0f}, measured / predicted "
        f"{top['measured_over_predicted']:.2f}, bound by {top['bound_by']}), `/sync` "
        f"{top_sync['requests_per_sec_median']:.1f} req/s (bound by {top_sync['bound_by']})."
    )
    top4 = find(sweep, config="4w x 1t", endpoint="async", connections=top["connections"])
    out.append(
        f"- **Workers help `async def` once the CPU is the limit, and not before.** At {top['connections']} "
        f"connections one worker managed {top['requests_per_sec_median']:.0f} req/s and 4 workers "
        f"{top4['requests_per_sec_median']:.0f} ({ratio(top4['requests_per_sec_median'], top['requests_per_sec_median'])}x; "
        f"this machine has {runs['concurrency'].environment['cpu_count']} "
        f"cores, shared with wrk). Below that, 1 and 4 workers give the same counts: "
        + ", ".join(
            f"{g['connections']} connections {g['requests_median']:g} vs "
            f"{find(sweep, config='4w x 1t', endpoint='async', connections=g['connections'])['requests_median']:g}"
            for g in sorted((g for g in sweep if g["config"] == "1w x 1t" and g["endpoint"] == "async"
                             and g["connections"] < top["connections"]), key=lambda g: g["connections"]))
        + "."
    )
    b1 = find(sweep, config="1w x 1t", endpoint="async-blocking", connections=top["connections"])
    b4 = find(sweep, config="4w x 1t", endpoint="async-blocking", connections=top["connections"])
    text = (
        f"- **Blocking inside `async def` is the worst of both.** `time.sleep` in an `async def` holds the event "
        f"loop, so a worker serves one request per sleep whatever the connections: at {b1['connections']} "
        f"connections {b1['requests_per_sec_median']:.2f} req/s with 1 worker, {b4['requests_per_sec_median']:.2f} "
        f"with 4 (peak inside the handler: {b1['peak_in_handler_max']} per worker)."
    )
    killed = sorted(results.glob("*-worker-killed"))
    if killed:
        killed_run = Run.load(killed[-1])
        (k,) = killed_run.rows
        args = killed_run.parameters["gunicorn_cmd_args"]
        text += (
            f" A loop blocked longer than gunicorn's `--timeout` stops sending heartbeats and gunicorn kills the "
            f"worker: in [`{killed[-1].name}`](results/{killed[-1].name}/) (`GUNICORN_CMD_ARGS=\"{args}\"`, "
            f"{k['connections']} connections, {k['sleep_s']:g} s sleep) gunicorn logged {k['worker_timeouts']} "
            f"`WORKER TIMEOUT` and wrk saw {k['errors']} read errors."
        )
    out.append(text)
    d, a = find(overhead, endpoint="sync"), find(overhead, endpoint="async")
    hop = 1e6 / d["requests_per_sec_median"] - 1e6 / a["requests_per_sec_median"]
    out.append(
        f"- **The thread hop has a price when there is no sleep.** Sleep 0, one worker, {d['connections']} "
        f"connections: `def` {d['requests_per_sec_median']:.0f} req/s, `async def` "
        f"{a['requests_per_sec_median']:.0f} req/s ({ratio(a['requests_per_sec_median'], d['requests_per_sec_median'])}x), "
        f"about {hop:.0f} us more CPU per request for `def` on this machine ({d['runs']} runs each)."
    )
    uv = find(workers, config="4w x 1t", endpoint="async")
    native = find(workers, config="4w x 1t asgi", endpoint="async")
    out.append(
        f"- **The worker class does not change the picture.** 4 workers `/async` at {uv['connections']} "
        f"connections: UvicornWorker {uv['requests_median']:g} requests, gunicorn's `asgi` worker "
        f"{native['requests_median']:g}; both bound by {uv['bound_by'].split(':')[0]}."
    )
    return "\n".join(out) + "\n"


def evidence(runs: dict[str, Run]) -> str:
    """wrk's quirks, each shown on a cell of the committed seed run."""
    if "seed" not in runs:
        return "Commit a seed reference run to generate this section.\n"
    rows, groups, timeout = runs["seed"].rows, runs["seed"].groups, runs["seed"].timeout_s
    slow = next(r for r in rows if r["config"] == "1w x 1t" and r["endpoint"] == "sync")
    fast = next(r for r in rows if r["config"] == "1w x 1t" and r["endpoint"] == "async")
    slow_wrk = load_wrk(runs["seed"].run_dir / slow["cell"] / "wrk.txt")
    waves = fast["predicted_requests"] // fast["predicted_edge"]
    out = [
        f"- *Timeouts are completed requests.* In `{slow['cell']}` wrk counts {slow['requests']} requests and "
        f"{slow['timeouts']} timeouts, responses that took {timeout:g} s or more; yet its latency max is "
        f"{format_seconds(slow['latency_max_s'])}. wrk's latency histogram stops at the timeout, so those "
        f"{slow['timeouts']} responses are in the request count but not in the latency statistics, and the "
        f"average ({format_seconds(slow['latency_avg_s'])}) understates what those clients waited.",
        f"- *Per-thread Req/Sec means little at a few requests per second.* In the same cell wrk's per-thread "
        f"Req/Sec average is {slow_wrk['thread_req_sec_avg']:g}, times {slow_wrk['threads']} threads "
        f"{slow_wrk['thread_req_sec_avg'] * slow_wrk['threads']:.1f}, against {slow['requests_per_sec']:.2f} "
        f"Requests/sec overall: wrk samples each thread every 100 ms and only when it saw a response.",
        f"- *Requests in flight at the end are dropped; the server finishes them anyway.* In `{fast['cell']}` "
        f"wrk counts {fast['requests']} while the server completed {fast['server_completed']}: "
        f"{fast['server_completed'] - fast['requests']} responses were still on their way when wrk stopped.",
        f"- *The wave that ends exactly at the duration is partly counted.* {fast['sleep_s']:g} s requests and a "
        f"{fast['duration_s']:g} s run: {waves} waves end inside the run and the next ends just as it stops; wrk "
        f"stops up to 100 ms late, so it counted {fast['requests'] - fast['predicted_requests']} of that wave's "
        f"{fast['predicted_edge']} here. The seed cells' counts over all runs: "
        + ", ".join(f"{g['config']} /{g['endpoint']} {format_range(g['requests_median'], g['requests_min'], g['requests_max'])}"
                    for g in groups) + ".",
    ]
    return "\n".join(out) + "\n"


def generated_readme(readme: str, results: Path) -> str:
    runs = reference_runs(results)
    blocks = {"results": results_section(runs), "findings": findings(runs, results), "evidence": evidence(runs)}
    for name, text in blocks.items():
        begin, end = markers(name)
        start, stop = readme.index(begin) + len(begin), readme.index(end)
        readme = readme[:start] + "\n" + text + readme[stop:]
    return readme


def update_readme(path: Path, results: Path, check: bool = False) -> int:
    current = path.read_text()
    wanted = generated_readme(current, results)
    if check:
        if current != wanted:
            print(f"report.py: {path} is not what the committed runs give: run python report.py readme", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "brief":
        print(brief(Path(argv[1])))
    elif len(argv) >= 2 and argv[0] == "describe":
        describe(Path(argv[1]), argv[2:])
    elif argv in (["readme"], ["readme", "--check"]):
        return update_readme(ROOT / "README.md", ROOT / "results", check=len(argv) == 2)
    elif len(argv) == 1 and Path(argv[0]).is_dir():
        print(write_summary(Path(argv[0])), end="")
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except WrkParseError as error:
        sys.exit(f"report.py: {error}")
