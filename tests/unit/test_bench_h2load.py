"""bench/h2load.py reads h2load's report (HTTP/2 rows of `make bench`)."""
import pytest

from bench.h2load import parse
from bench.wrk import WrkError

REPORT = """\
TLS Protocol: TLSv1.3
Application protocol: h2
finished in 10.01s, 1397.90 req/s, 148.55KB/s
requests: 13990 total, 14011 started, 13979 done, 13970 succeeded, 9 failed, 2 errored, 1 timeout
status codes: 13970 2xx, 0 3xx, 3 4xx, 6 5xx
traffic: 1.45MB (1521125) total, 568.96KB (582612) headers (space savings 73.62%), 546.05KB (559160) data
                     min         max         mean         sd        +/- sd
time for request:    13.91ms    112.30ms     22.51ms      8.87ms    92.62%
"""


def test_an_h2load_report_gives_rate_done_errors_and_the_mean():
    result, mean = parse(REPORT)
    assert result.requests_per_sec == 1397.90 and result.requests == 13979
    assert result.non_2xx == 9 and result.socket_errors == (0, 2, 0, 1) and result.errors == 12
    assert result.p50_ms is None and result.p99_ms is None  # h2load prints no percentiles
    assert mean == "22.51ms"


def test_a_run_that_did_not_negotiate_h2_is_an_error_not_a_figure():
    with pytest.raises(WrkError, match="did not speak HTTP/2"):
        parse(REPORT.replace("Application protocol: h2", "Application protocol: http/1.1"))
    with pytest.raises(WrkError, match="cannot read"):
        parse("Application protocol: h2\n")
