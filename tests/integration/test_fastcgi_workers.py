"""Two workers share one php-fpm pool: its children are its capacity, and kept-alive FastCGI
connections hold them, so a worker must not keep idle connections that another worker's
request is waiting for (proxy.upstream.connection_budget).

Before the node counted connections, a worker's request that took a free slot opened a
connection that waited in php-fpm's backlog until the other worker closed an idle one,
after up to the 2 s idle timeout: p99 1.3-1.8 s under wrk, where one worker has 8 ms.
"""
from __future__ import annotations

from tests.support.director import Director
from tests.support.fastcgi_servers import PHP_ROOT, start_php_fpm
from tests.support.load import wrk_through
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import free_port, wait_for
from tests.support.workers import every_worker_sees

CHILDREN = 2  # the php-fpm TCP pool of tests.support.fastcgi_servers

CONFIG = """
    [directors.php]
    health_check_success_threshold = 1
    health_check_request_path = "/hello.php"
    health_check_fcgi_script_filename = "{root}/hello.php"
    backends = {{ fpm = {{ url = "fastcgi://127.0.0.1:{port}", capacity = {capacity}, health_check_interval = 0.5 }} }}

    [[routes]]
    path = "/"
    pass = "php"
    document_root = "{root}"
"""


def test_two_workers_never_leave_a_request_waiting_for_a_php_fpm_child(tmp_path):
    (tmp_path / "fpm").mkdir()
    php = start_php_fpm(tmp_path / "fpm", free_port())
    try:
        with postgres_database() as database:
            director = Director(tmp_path / "director", CONFIG.format(port=php.port, capacity=CHILDREN, root=PHP_ROOT),
                                database_url=database, env={"REDIS_URL": redis_url()},
                                extra_args=["--workers", "2"])
            assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
            director.start()
            try:
                wait_for(lambda: every_worker_sees(director, 2, {"fpm": "online"}), 20, what="both workers ready")
                with wrk_through(f"http://127.0.0.1:{director.port}/hello.php", 16, 6) as run:
                    result = run.result()
            finally:
                director.stop()
    finally:
        php.stop()
    assert result.requests > 500, result
    assert result.errors == 0, result.describe_errors()
    # Each request takes well under 10 ms here; 0.5 s leaves a loaded machine room and still
    # catches a request parked behind another worker's idle connection (about 2 s).
    assert result.p99_ms < 500, result
