"""The parsers, on real wrk and httperf outputs (tests/fixtures/README.md says where each came from)."""

from pathlib import Path

import pytest

from report import parse

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return parse.load_wrk(FIXTURES / name)


def test_parses_seconds_kilobytes_timeouts_and_bytes_per_second():
    wrk = fixture("seed-1w1t-sync-timeouts.txt")
    assert wrk["duration_s"] == 60 and wrk["threads"] == 4 and wrk["connections"] == 100
    assert wrk["url"] == "http://127.0.0.1:8000/sync"
    assert (wrk["latency_avg_s"], wrk["latency_stdev_s"], wrk["latency_max_s"]) == (17.43, 4.85, 30.0)
    assert wrk["thread_req_sec_avg"] == 7.27
    assert wrk["requests"] == 201 and wrk["runtime_s"] == 60.0
    assert wrk["bytes_read"] == pytest.approx(27.28 * 1024)
    assert (wrk["errors_connect"], wrk["errors_read"], wrk["errors_write"], wrk["timeouts"]) == (0, 0, 0, 58)
    assert wrk["non_2xx_3xx"] == 0 and wrk["latency_percentiles_s"] is None
    assert wrk["requests_per_sec"] == 3.35 and wrk["transfer_per_sec"] == pytest.approx(465.48)


def test_parses_milliseconds_and_no_error_line():
    wrk = fixture("seed-1w1t-async.txt")
    assert wrk["latency_stdev_s"] == pytest.approx(6.02e-3)
    assert wrk["timeouts"] == 0 and wrk["errors_read"] == 0
    assert wrk["transfer_per_sec"] == pytest.approx(1.28 * 1024)


def test_parses_microseconds_percentiles_megabytes_and_metric_rates():
    wrk = fixture("overhead-async-latency-us-MB.txt")
    assert wrk["latency_avg_s"] == pytest.approx(205.08e-6) and wrk["latency_max_s"] == pytest.approx(4.32e-3)
    assert wrk["latency_percentiles_s"] == pytest.approx({"50": 195e-6, "75": 208e-6, "90": 229e-6, "99": 752e-6})
    assert wrk["thread_req_sec_avg"] == pytest.approx(5150)
    assert wrk["requests"] == 15880 and wrk["runtime_s"] == pytest.approx(3.10)
    assert wrk["bytes_read"] == pytest.approx(2.09 * 1024**2)
    assert fixture("overhead-sync-latency-us.txt")["latency_percentiles_s"]["99"] == pytest.approx(1.05e-3)


def test_parses_minutes_in_latency_and_percentiles():
    wrk = fixture("sync-latency-minutes.txt")
    assert wrk["latency_max_s"] == pytest.approx(0.98 * 60)
    assert wrk["latency_percentiles_s"] == pytest.approx({"50": 30.04, "75": 45.05, "90": 54.0, "99": 58.8})
    assert wrk["runtime_s"] == 60.0 and wrk["requests"] == 59


def test_parses_read_errors_and_non_2xx():
    assert fixture("async-blocking-worker-killed.txt")["errors_read"] == 5
    wrk = fixture("not-found-404.txt")
    assert wrk["non_2xx_3xx"] == wrk["requests"] == 11956
    assert wrk["transfer_per_sec"] == pytest.approx(1.75 * 1024**2)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1.50GB", 1.5 * 1024**3),
        ("2.00TB", 2 * 1024**4),
        ("512.00B", 512.0),
    ],
)
def test_byte_units_beyond_what_a_real_run_here_reaches(text, value):
    assert parse.byte_count(text) == value


def test_hours_and_giga_units():
    assert parse.seconds("1.00h") == 3600 and parse.metric("1.20M") == 1.2e6


def test_truncated_output_names_the_file(tmp_path):
    lines = (FIXTURES / "seed-1w1t-async.txt").read_text().splitlines(keepends=True)
    truncated = tmp_path / "wrk.txt"
    truncated.write_text("".join(lines[:5]))
    with pytest.raises(
        parse.ParseError, match=rf"{truncated}: truncated or not this tool's output \(no totals, requests_per_sec"
    ):
        parse.load_wrk(truncated)


def test_unknown_line_names_file_and_line(tmp_path):
    odd = tmp_path / "wrk.txt"
    odd.write_text("unable to connect to 127.0.0.1:9 Connection refused\n")
    with pytest.raises(parse.ParseError, match=rf"{odd}:1: not a line of the report"):
        parse.load_wrk(odd)


def test_unknown_unit_is_an_error_not_a_zero(tmp_path):
    text = (FIXTURES / "seed-1w1t-async.txt").read_text().replace("76.94KB read", "76.94XB read")
    with pytest.raises(parse.ParseError, match="cannot read a size '76.94XB'"):
        parse.parse_wrk(text, "odd.txt")


def httperf_fixture(name: str) -> dict:
    return parse.load_httperf(FIXTURES / name)


def test_parses_httperf_replies_latency_and_status():
    h = httperf_fixture("httperf-async-all-replied.txt")
    assert (h["connections"], h["requests"], h["replies"], h["status_2xx"]) == (60, 60, 60, 60)
    assert h["test_duration_s"] == 3.952 and h["concurrent_max"] == 21
    assert (h["latency_min_s"], h["latency_median_s"], h["latency_max_s"]) == pytest.approx((1.0005, 1.0005, 1.0048))
    assert h["errors_total"] == h["client_timeouts"] == 0 and h["cpu_system_s"] == 3.72


def test_parses_httperf_client_timeouts_and_refused_connections():
    h = httperf_fixture("httperf-blocking-client-timeouts.txt")
    assert (h["replies"], h["client_timeouts"], h["errors_total"]) == (2, 10, 10)
    refused = httperf_fixture("httperf-connection-refused.txt")
    assert (refused["requests"], refused["replies"], refused["connrefused"]) == (0, 0, 10)
    overloaded = httperf_fixture("httperf-sync-overloaded.txt")
    assert overloaded["replies"] + overloaded["client_timeouts"] == overloaded["connections"]


def test_httperf_unknown_line_and_truncation_name_the_file(tmp_path):
    text = (FIXTURES / "httperf-async-all-replied.txt").read_text()
    odd = tmp_path / "httperf.txt"
    odd.write_text(text.replace("Net I/O:", "Session rate [sess/s]: min 0.00\nNet I/O:"))
    with pytest.raises(parse.ParseError, match=rf"{odd}:\d+: not a line of the report: 'Session rate"):
        parse.load_httperf(odd)
    odd.write_text(text.split("Reply status")[0])
    with pytest.raises(parse.ParseError, match=r"truncated or not this tool's output \(no reply_status, cpu, errors"):
        parse.load_httperf(odd)
