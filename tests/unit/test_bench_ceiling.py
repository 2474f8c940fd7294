"""bench/run.py's ceiling for two workers and steal note, and bench/cpu.py's machine CPU reading."""
from bench.cpu import TICKS, machine_seconds
from bench.run import Row, workers_ceiling
from bench.wrk import WrkResult


def _row(key: str, rate: float, cpu: float | None, machine: float | None) -> Row:
    result = WrkResult(requests_per_sec=rate, p50_ms=1.0, p99_ms=2.0, requests=int(rate * 10), non_2xx=0)
    return Row(key, key, result=result, cpu_us_per_request=cpu, machine_us_per_request=machine)


def test_ceiling_is_all_cpus_busy_at_the_rows_machine_cpu_per_request():
    # 2 CPUs, 110 µs of machine CPU per request: at most 18,182 req/s; one worker did 12,500.
    rows = {"director": _row("director", 12_500, 78, 100), "director-2": _row("director-2", 17_000, 81, 110)}
    assert workers_ceiling(rows, cpus=2) == "1.45"


def test_ceiling_is_at_most_one_cpu_per_worker():
    # 8 CPUs would allow 72,727 req/s, but two workers at 81 µs each do at most 24,691.
    rows = {"director": _row("director", 12_500, 78, 100), "director-2": _row("director-2", 17_000, 81, 110)}
    assert workers_ceiling(rows, cpus=8) == "1.98"


def test_ceiling_needs_both_rows_measured():
    rows = {"director": _row("director", 12_500, 78, 100), "director-2": _row("director-2", 17_000, 81, None)}
    assert workers_ceiling(rows, cpus=2) == "n/a"
    assert workers_ceiling({"director": rows["director"]}, cpus=2) == "n/a"


def test_machine_busy_is_user_nice_system_irq_softirq_and_stolen_time_apart():
    stat = "cpu  100 20 30 5000 40 6 7 800 0 0\ncpu0 50 10 15 2500 20 3 3 400 0 0\n"
    busy, stolen, total = machine_seconds(stat)
    assert (busy, stolen) == ((100 + 20 + 30 + 6 + 7) / TICKS, 800 / TICKS)
    assert total == (163 + 5000 + 40 + 800) / TICKS


def test_a_row_with_stolen_time_says_so():
    from bench.run import table
    row = _row("director", 12_500, 78, 100)
    row.peak_mb, row.stolen_share = 100.0, 0.12
    assert "- row 1: the hypervisor took 12% of the CPUs' time (steal)" in table([row])
    row.stolen_share = 0.01
    assert "steal" not in table([row])
