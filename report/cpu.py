"""Was a CPU the limit of a cell? Measured, never predicted: the machine nearly all busy, or the
server or the load generator nearly all of what it can use (a worker runs Python on one core at a
time)."""

from core.cell import Cell

from .records import Measured

SATURATED = 0.90  # a CPU this busy (of what it can use) is the limit


def cpu_verdict(cell: Cell, m: Measured, cpus: int) -> tuple[bool | None, str]:
    """(saturated, the figures as the tables print them); None when the CPU was not measured.

    httperf --hog polls without sleeping, so it fills its core whatever the load: its own CPU
    says nothing, and the servers have the other cores.
    """
    window, server, load = m.window_s, m.server_cpu_s, m.load_cpu_s
    if not window or server is None or load is None:
        return None, "CPU not measured"
    busy_polling = m.load == "httperf"
    upstream = m.upstream_cpu_s or 0.0
    database = m.database_cpu_s or 0.0
    text = (
        f"server {100 * server / window / cpus:.0f}%"
        + (f", upstream {100 * upstream / window / cpus:.0f}%" if upstream else "")
        + (f", PostgreSQL {100 * database / window / cpus:.0f}%" if database else "")
        + f", {m.load} {100 * load / window / cpus:.0f}% of {cpus} cores"
    )
    left_to_servers = cpus - 1 if cell.pin or busy_polling else cpus
    machine = (
        (server + upstream + database + (0 if busy_polling else load))
        / window
        / (left_to_servers if busy_polling else cpus)
    )
    server_cores = min(cell.workers, left_to_servers)
    server_use = server / window / server_cores
    load_cores = 1 if cell.pin else min(cpus, cell.wrk_threads)
    load_use = 0 if busy_polling else load / window / load_cores
    if machine >= SATURATED:
        where = "the servers' cores" if busy_polling else "machine"
        return True, f"CPU: {where} {100 * machine:.0f}% busy ({text})"
    if server_use >= SATURATED:
        return True, f"CPU: server {100 * server_use:.0f}% of its {server_cores} core(s) ({text})"
    if load_use >= SATURATED:
        return True, f"CPU: {m.load} {100 * load_use:.0f}% of its {load_cores} core(s) ({text})"
    return False, text
