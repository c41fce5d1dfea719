"""plot.png for a run: measured (solid, bars) against predicted (dashed), in the shape that fits
the set: a sweep over connections, bars per config, the servers' spread, or the open loop."""

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import files

from .records import Group


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


Line = tuple[object, ...]


def _lines(groups: list[Group], key: Callable[[Group], Line]) -> dict[Line, list[Group]]:
    by_line: dict[Line, list[Group]] = {}
    for g in groups:
        by_line.setdefault(key(g), []).append(g)
    return by_line


def plot(run_dir: Path, groups: list[Group]) -> Path:
    plt = _pyplot()
    closed = [g for g in groups if g.cell.rate is None]
    open_loop = [g for g in groups if g.cell.rate is not None]
    servers = len({g.cell.server for g in closed}) > 1 or any(g.cell.server != "gunicorn" for g in closed)
    by_line = _lines(closed, lambda g: (g.cell.label(), g.cell.counted_as, g.cell.sleep))
    sweep = any(len({g.connections for g in line}) > 1 for line in by_line.values())
    if open_loop:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
        _open_loop(axes, open_loop)
    elif servers:  # one panel per load (their scales differ a hundredfold), then the spread
        loads = list(dict.fromkeys((g.connections, g.cell.sleep) for g in closed))
        fig, axes = plt.subplots(1, len(loads) + 1, figsize=(5 * (len(loads) + 1), 5.2), dpi=110)
        for ax, (connections, sleep) in zip(axes, loads):
            _bars(ax, [g for g in closed if (g.connections, g.cell.sleep) == (connections, sleep)])
            ax.set_title(f"{connections} connections, sleep {sleep:g} s")
        _spread(axes[-1], closed)
    else:
        fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
        axes = [ax]
        (_sweep if sweep else _bars)(ax, closed if sweep else closed)
    for ax in axes:
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="small")
        ax.title.set_fontsize("medium")
    fig.suptitle(run_dir.name, fontsize="medium")
    fig.tight_layout()
    path = run_dir / files.PLOT
    fig.savefig(path)
    plt.close(fig)
    return path


def _sweep(ax: Any, groups: list[Group]) -> None:
    for (config, endpoint, _), line in _lines(
        groups, lambda g: (g.cell.label(), g.cell.counted_as, g.cell.sleep)
    ).items():
        line.sort(key=lambda g: g.connections or 0)
        x = [g.connections for g in line]
        drawn = ax.plot(x, [g.requests_per_sec.median for g in line], marker="o", label=f"{config} /{endpoint}")
        ceiling = [g.predicted_requests_per_sec for g in line]
        if all(c is not None for c in ceiling):
            ax.plot(x, ceiling, linestyle="--", color=drawn[0].get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wrk connections (log scale)")
    ax.set_ylabel("requests per second")
    ax.set_title("measured (solid) vs predicted (dashed)")


def _bars(ax: Any, groups: list[Group]) -> None:
    one_load = len({(g.connections, g.cell.sleep) for g in groups}) == 1

    def _category(g: Group) -> str:
        return g.cell.label() if one_load else f"{g.cell.label()}\nc={g.connections} sleep {g.cell.sleep:g}s"

    categories = list(dict.fromkeys(_category(g) for g in groups))
    endpoints = list(dict.fromkeys(g.cell.counted_as for g in groups))
    width = 0.8 / len(endpoints)
    for i, endpoint in enumerate(endpoints):
        for j, category in enumerate(categories):
            g = next((g for g in groups if _category(g) == category and g.cell.counted_as == endpoint), None)
            if g is None:
                continue
            x = j + (i - (len(endpoints) - 1) / 2) * width
            median, low, high = (
                g.requests_per_sec.median or 0,
                g.requests_per_sec.low or 0,
                g.requests_per_sec.high or 0,
            )
            ax.bar(
                x,
                median,
                width * 0.9,
                color=f"C{i}",
                label=f"/{endpoint}" if j == 0 else None,
                yerr=[[median - low], [high - median]],
                capsize=3,
            )
            if g.predicted_requests_per_sec is not None:
                first = (i, j) == (0, 0)
                ax.hlines(
                    g.predicted_requests_per_sec,
                    x - width / 2,
                    x + width / 2,
                    colors="black",
                    linestyles="--",
                    label="predicted: complete waves" if first else None,
                )
                if g.predicted_edge:
                    ax.bar(
                        x,
                        g.predicted_edge / g.cell.duration,
                        width,
                        bottom=g.predicted_requests_per_sec,
                        fill=False,
                        hatch="//",
                        edgecolor="gray",
                        linewidth=0,
                        label="+ the wave ending as wrk stops" if first else None,
                    )
    ax.set_xticks(range(len(categories)), categories, fontsize="x-small", rotation=20 if len(categories) > 4 else 0)
    if any(g.cell.sleep == 0 for g in groups) and any(g.cell.sleep > 0 for g in groups):
        ax.set_yscale("log")
    ax.set_ylabel("requests per second")
    ax.set_title("measured req/s (bars: median, whiskers: min-max) vs predicted")


def _spread(ax: Any, groups: list[Group]) -> None:
    """Per server, the share of connections the busiest worker took in each run (even = 1/workers)."""
    configs = list(dict.fromkeys(g.cell.label() for g in groups))
    for i, config in enumerate(configs):
        shares = [
            max(s) / sum(s)
            for g in groups
            if g.cell.label() == config
            for s in g.connections_per_worker
            if s and sum(s)
        ]
        ax.scatter([i] * len(shares), shares, color="C3", alpha=0.6, label="one run" if i == 0 else None)
    workers = max(g.cell.workers for g in groups)
    ax.axhline(1 / workers, color="black", linestyle="--", label=f"even: 1/{workers}")
    ax.set_xticks(range(len(configs)), configs, fontsize="x-small", rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("busiest worker's share of the connections")
    ax.set_title("the connection spread")


def _open_loop(axes: Any, groups: list[Group]) -> None:
    for (config, endpoint), line in _lines(groups, lambda g: (g.cell.label(), g.cell.counted_as)).items():
        line.sort(key=lambda g: g.offered_fraction or 0)
        x = [g.offered_fraction for g in line]
        drawn = axes[0].plot(
            x,
            [(g.client_timeouts.median or 0) / (g.offered.median or 1) for g in line],
            marker="o",
            label=f"{config} /{endpoint}",
        )
        color = drawn[0].get_color()
        # The model as fed with the spread the workers reported (the same as the even one for 1 worker).
        expected = [statistics.median(e for e in g.expected_replies if e is not None) for g in line]
        axes[0].plot(
            x,
            [1 - e / (g.offered.median or 1) for e, g in zip(expected, line)],
            linestyle="--",
            color=color,
            alpha=0.6,
        )
        axes[1].plot(
            x, [g.latency_median_s.median for g in line], marker="o", color=color, label=f"{config} /{endpoint}"
        )
        axes[1].plot(x, [g.predicted_latency_median_s for g in line], linestyle="--", color=color, alpha=0.6)
    axes[0].set_ylabel("share of requests timed out")
    axes[1].set_ylabel("median latency of the replies (s)")
    for ax in axes:
        ax.set_xlabel("offered rate / the `def` endpoint's capacity")
    axes[0].set_title("timeouts: measured (solid) vs predicted (dashed)")
    axes[1].set_title("latency of what was answered")
