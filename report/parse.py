"""Read the raw files a run keeps: wrk's and httperf's reports, the workers' counters, the
servers' CPU samples and the load generator's own usage. Nothing here interprets them."""

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.files import worker_files

# A report's figures by name, as the tool printed them (seconds, bytes, counts): the raw-file boundary.
Report = dict[str, Any]


class ParseError(ValueError):
    pass


# ---------------------------------------------------------------- wrk 4 (src/wrk.c, src/units.c)

# wrk's units: latency us/ms/s/m/h, bytes 1024-based, per-thread rates metric.
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
BYTE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
METRIC_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _with_unit(text: str, units: Mapping[str, float], what: str) -> float:
    match = re.fullmatch(r"(-?[0-9.]+)([A-Za-z]*)", text)
    if not match or match.group(2) not in units:
        raise ValueError(f"cannot read {what} {text!r}")
    return float(match.group(1)) * float(units[match.group(2)])


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
WRK_REQUIRED = ["header", "setup", "latency", "req_sec", "totals", "requests_per_sec", "transfer_per_sec"]


def _match_lines(
    text: str, name: str, patterns: list[tuple[str, str]], required: list[str]
) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, tuple[str, ...]]]]:
    """Every non-empty line must match one pattern: an unknown line is an error naming file and line."""
    seen: dict[str, tuple[str, ...]] = {}  # the first line of each kind
    lines: list[tuple[str, tuple[str, ...]]] = []  # every line, for the kinds that repeat (wrk's percentiles)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        for kind, pattern in patterns:
            match = re.fullmatch(pattern, line.rstrip())
            if match:
                break
        else:
            raise ParseError(f"{name}:{number}: not a line of the report: {line.strip()!r}")
        seen.setdefault(kind, match.groups())
        lines.append((kind, match.groups()))
    missing = [kind for kind in required if kind not in seen]
    if missing:
        raise ParseError(f"{name}: truncated or not this tool's output (no {', '.join(missing)} line)")
    return seen, lines


def parse_wrk(text: str, name: str = "wrk output") -> Report:
    """Parse wrk 4's text report; every figure in seconds, bytes or plain counts."""
    seen, lines = _match_lines(text, name, WRK_LINES, WRK_REQUIRED)
    try:
        percentiles = {groups[0]: seconds(groups[1]) for kind, groups in lines if kind == "percentile"}
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
        raise ParseError(f"{name}: {error}") from None


def load_wrk(path: Path) -> Report:
    return parse_wrk(path.read_text(errors="replace"), str(path))


def wrk_errors(wrk: Report) -> int:
    """Socket errors other than timeouts (those are completed requests), plus 4xx/5xx answers."""
    return int(wrk["errors_connect"] + wrk["errors_read"] + wrk["errors_write"] + wrk["non_2xx_3xx"])


# ---------------------------------------------------------------- httperf 0.9 (src/stat/basic.c)

N = r"(-?[0-9.]+)"
HTTPERF_LINES = [
    ("warning", r"httperf: warning: .*"),
    ("command", r"httperf( --\S+)+"),
    ("burst", r"Maximum connect burst length: \d+"),
    ("total", rf"Total: connections (\d+) requests (\d+) replies (\d+) test-duration {N} s"),
    ("connection_rate", rf"Connection rate: {N} conn/s \({N} ms/conn, <=(\d+) concurrent connections\)"),
    ("connection_time", rf"Connection time \[ms\]: min {N} avg {N} max {N} median {N} stddev {N}"),
    ("connect_time", rf"Connection time \[ms\]: connect {N}"),
    ("connection_length", rf"Connection length \[replies/conn\]: {N}"),
    ("request_rate", rf"Request rate: {N} req/s \({N} ms/req\)"),
    ("request_size", rf"Request size \[B\]: {N}"),
    ("reply_rate", rf"Reply rate \[replies/s\]: min {N} avg {N} max {N} stddev {N} \((\d+) samples\)"),
    ("reply_time", rf"Reply time \[ms\]: response {N} transfer {N}"),
    ("reply_size", rf"Reply size \[B\]: header {N} content {N} footer {N} \(total {N}\)"),
    ("reply_status", r"Reply status: 1xx=(\d+) 2xx=(\d+) 3xx=(\d+) 4xx=(\d+) 5xx=(\d+)"),
    ("cpu", rf"CPU time \[s\]: user {N} system {N} \(user {N}% system {N}% total {N}%\)"),
    ("net_io", r"Net I/O: .*"),
    ("errors", r"Errors: total (\d+) client-timo (\d+) socket-timo (\d+) connrefused (\d+) connreset (\d+)"),
    ("errors_more", r"Errors: fd-unavail (\d+) addrunavail (\d+) ftab-full (\d+) other (\d+)"),
]
HTTPERF_REQUIRED = ["total", "connection_time", "reply_rate", "reply_status", "cpu", "errors", "errors_more"]


def parse_httperf(text: str, name: str = "httperf output") -> Report:
    """Parse httperf's report: times in seconds (it prints ms), counts as integers."""
    seen, _ = _match_lines(text, name, HTTPERF_LINES, HTTPERF_REQUIRED)
    total, connection, status = seen["total"], seen["connection_time"], seen["reply_status"]
    errors, more, cpu, rate = seen["errors"], seen["errors_more"], seen["cpu"], seen["reply_rate"]
    return {
        "connections": int(total[0]),
        "requests": int(total[1]),
        "replies": int(total[2]),
        "test_duration_s": float(total[3]),
        "concurrent_max": int(seen["connection_rate"][2]) if "connection_rate" in seen else None,
        # httperf's connection time covers connections that got their reply.
        "latency_min_s": float(connection[0]) / 1e3,
        "latency_avg_s": float(connection[1]) / 1e3,
        "latency_max_s": float(connection[2]) / 1e3,
        "latency_median_s": float(connection[3]) / 1e3,
        "latency_stdev_s": float(connection[4]) / 1e3,
        "reply_rate_min": float(rate[0]),
        "reply_rate_avg": float(rate[1]),
        "reply_rate_max": float(rate[2]),
        "reply_rate_samples": int(rate[4]),
        "status_1xx": int(status[0]),
        "status_2xx": int(status[1]),
        "status_3xx": int(status[2]),
        "status_4xx": int(status[3]),
        "status_5xx": int(status[4]),
        "cpu_user_s": float(cpu[0]),
        "cpu_system_s": float(cpu[1]),
        "errors_total": int(errors[0]),
        "client_timeouts": int(errors[1]),
        "socket_timeouts": int(errors[2]),
        "connrefused": int(errors[3]),
        "connreset": int(errors[4]),
        "fd_unavail": int(more[0]),
        "addrunavail": int(more[1]),
        "ftab_full": int(more[2]),
        "errors_other": int(more[3]),
    }


def load_httperf(path: Path) -> Report:
    return parse_httperf(path.read_text(errors="replace"), str(path))


# ---------------------------------------------------------------- what benchmark.sh recorded beside them


def read_json(path: Path) -> Report | None:
    return json.loads(path.read_text()) if path.exists() else None


def worker_snapshots(stats_dir: Path, name: str) -> list[Report]:
    """One dict per worker: the counters it wrote when asked for snapshot NAME ("" = its last dump)."""
    snapshots = []
    for p in worker_files(stats_dir, name):
        try:
            snapshots.append(json.loads(p.read_text()))
        except ValueError as error:  # a failed run, set aside, rather than a traceback
            raise ParseError(f"{p}: not one JSON document ({error})") from None
    return snapshots
