"""Sticky cookie units: parsing the cookie, Set-Cookie, and DirectorRuntime.acquire(prefer=)
taking the named backend, queueing for it when full, and falling back when it cannot serve."""
import asyncio

from proxy.headers import cookie_value
from proxy.runtime import DirectorSettings
from proxy.sticky import StickyCookie, sticky_cookie
from tests.unit.test_director_queue import make

RR3 = (("a", 1, "active", "online"), ("b", 1, "active", "online"), ("c", 1, "active", "online"))


def test_cookie_value_is_exact_and_finds_it_among_others():
    headers = [(b"host", b"x"), (b"cookie", b"other=1; SRV=b2"), (b"cookie", b"later=2")]
    assert cookie_value(headers, b"SRV") == b"b2"
    assert cookie_value(headers, b"srv") is None  # cookie names are case-sensitive
    assert cookie_value(headers, b"srv", any_case=True) == b"b2"  # backend_from = "cookie:NAME" folds case
    assert cookie_value([(b"cookie", b'SRV="b1"')], b"SRV") == b"b1"
    assert cookie_value([(b"cookie", b"SRV=")], b"SRV") is None
    assert cookie_value([], b"SRV") is None


def test_off_when_empty_and_kept_across_reloads():
    assert sticky_cookie(DirectorSettings(), None) is None
    first = sticky_cookie(DirectorSettings(sticky_cookie="SRV"), None)
    assert sticky_cookie(DirectorSettings(sticky_cookie="SRV"), first) is first
    assert sticky_cookie(DirectorSettings(sticky_cookie="OTHER"), first).name == "OTHER"


async def test_the_sender_sets_the_cookie_only_for_another_backend():
    director, (a, b, _) = make(DirectorSettings(sticky_cookie="SRV"), *RR3)
    sent = []

    async def send(message):
        sent.append(message)

    session = StickyCookie("SRV").session([(b"cookie", b"SRV=a")])
    assert session.preferred(director) is a
    assert session.sender(a, send) is send
    await session.sender(b, send)({"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]})
    await session.sender(b, send)({"type": "http.response.body", "body": b""})
    assert sent[0]["headers"] == [(b"x", b"1"), (b"set-cookie", b"SRV=b; Path=/; HttpOnly")]
    assert sent[1] == {"type": "http.response.body", "body": b""}


async def test_prefer_takes_that_backend_every_time():
    director, (a, b, c) = make(DirectorSettings(), *RR3)
    for _ in range(5):
        slot = await director.acquire(prefer=b)
        assert slot.backend is b
        slot.release()


async def test_prefer_a_full_backend_waits_for_it_while_others_are_free():
    director, (a, b, c) = make(DirectorSettings(queue_timeout=5), *RR3)
    held = await director.acquire(prefer=b)
    waiter = asyncio.ensure_future(director.acquire(prefer=b))
    await asyncio.sleep(0)
    assert not waiter.done() and director.queued.current == 1
    other = await director.acquire()  # a newcomer without a preference still gets a free backend
    assert other.backend is not b
    held.release()
    assert (await waiter).backend is b


async def test_prefer_a_backend_that_goes_offline_while_waiting_takes_another():
    director, (a, b, c) = make(DirectorSettings(queue_timeout=5), *RR3)
    held = await director.acquire(prefer=b)
    waiter = asyncio.ensure_future(director.acquire(prefer=b))
    await asyncio.sleep(0)
    director.set_health(b, "offline")
    slot = await asyncio.wait_for(waiter, 1)
    assert slot.backend in (a, c)
    held.release()


async def test_prefer_is_ignored_when_the_backend_cannot_serve():
    director, (a, b, c) = make(DirectorSettings(), *RR3)
    b.enabled = False
    director.rebuild(director.settings, [a, b, c])
    assert (await director.acquire(prefer=b)).backend in (a, c)


async def test_prefer_a_backup_only_while_no_active_is_available():
    director, (act, bak) = make(DirectorSettings(), ("act", 0, "active", "online"), ("bak", 0, "backup", "online"))
    assert (await director.acquire(prefer=bak)).backend is act
    director.set_health(act, "offline")
    assert (await director.acquire(prefer=bak)).backend is bak


async def test_a_retry_does_not_go_back_to_the_preferred_backend():
    director, (a, b, c) = make(DirectorSettings(), *RR3)
    slot = await director.acquire({b}, retrying=True, prefer=b)
    assert slot.backend in (a, c)
