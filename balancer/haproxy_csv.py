"""`/haproxy/stats.csv`: the overview in HAProxy's stats CSV layout, so dashboards and
scripts written for HAProxy's `;csv` stats URI can read Director.

Each director is shown like an HAProxy `listen` section: a FRONTEND row (requests from
clients), one row per backend server, then the BACKEND summary row. Fields Director has no
figure for are left empty, as HAProxy does for fields that do not apply. Names are limited
to [A-Za-z0-9_.-], so no value needs quoting. Open on the management listener, like
HAProxy's stats URI (it binds loopback by default).

bin/bout are body bytes (request bodies received, response bodies sent) of the director's
requests, or of those a server answered. rtime (the server's response time) and ttime (the
whole request) are averages in milliseconds over every request since the process group
started, where HAProxy averages the last 1024.

Server status: UP (online), DOWN (offline or not yet checked), MAINT (disabled by an
operator), DRAIN (removed, finishing in-flight requests). Health columns: `lastchg` seconds
since the last state change, `downtime` total seconds offline (the current period included),
`check_status` of the last check L7OK, L7STS (wrong status), L7TOUT / L4CON (timeout / other
failure), INI (not yet checked), `check_code` its HTTP status, `check_duration` its
milliseconds.
"""
from __future__ import annotations

import time

from django.http import HttpResponse

from . import overview

FIELDS = (
    "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,"
    "rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,"
    "hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,"
    "last_agt,qtime,ctime,rtime,ttime"
).split(",")
HEADER = "# " + ",".join(FIELDS) + ",\n"
TYPE_FRONTEND, TYPE_BACKEND, TYPE_SERVER = 0, 1, 2
PID = 1  # HAProxy's process number; Director serves from one process
CONTENT_TYPE = "text/plain; charset=utf-8"

SERVER_STATUS = {"online": "UP", "offline": "DOWN", "undefined": "DOWN", overview.STATE_DISABLED: "MAINT",
                 overview.STATE_DRAINING: "DRAIN"}
UNEXPECTED_STATUS = "unexpected status "  # prefix of the probe's error for a wrong status
TIMED_OUT = "timed out"


def render(view: dict, now: float | None = None) -> str:
    """The whole CSV document of one overview (`balancer.overview.merge`)."""
    now = time.time() if now is None else now
    lines = [HEADER]
    for iid, director in enumerate(view["directors"], start=1):
        lines.append(_line(_frontend(director, iid)))
        lines.extend(_line(_server(director, backend, iid, sid, now))
                     for sid, backend in enumerate(director["backends"], start=1))
        lines.append(_line(_backend(director, iid)))
    return "".join(lines)


def _line(row: dict) -> str:
    return ",".join(_text(row.get(name)) for name in FIELDS) + ",\n"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value))
    return str(value)


def _http_responses(responses: dict) -> dict:
    return {f"hrsp_{cls}": responses[cls] for cls in ("1xx", "2xx", "3xx", "4xx", "5xx")} | {"hrsp_other": 0}


def _common(director: dict, svname: str, row_type: int, iid: int, sid: int) -> dict:
    return {"pxname": director["name"], "svname": svname, "pid": PID, "iid": iid, "sid": sid, "type": row_type,
            "bin": director["bytes"]["received"], "bout": director["bytes"]["sent"], "cli_abrt": 0, "srv_abrt": 0}


def _average_ms(histograms: list[dict | None]) -> int | None:
    """Mean in milliseconds of the observations of these {counts, sum} histograms."""
    count = sum(sum(h["counts"]) for h in histograms if h is not None)
    total = sum(h["sum"] for h in histograms if h is not None)
    return round(total * 1000 / count) if count else None


def _times(entries: list[dict]) -> dict:
    """rtime and ttime of a server (one entry) or a backend (its servers and the director)."""
    upstream = [e.get("upstream") for e in entries]
    durations = [h for e in entries for h in e["durations"].values()]
    return {"rtime": _average_ms(upstream), "ttime": _average_ms(durations)}


def _frontend(director: dict, iid: int) -> dict:
    in_flight = director["load"]["current"] + director["queued"]["current"]
    finished = overview.total_responses(director)
    return {
        **_common(director, "FRONTEND", TYPE_FRONTEND, iid, 0),
        "scur": in_flight, "smax": director["load"]["max"] + director["queued"]["max"], "stot": finished + in_flight,
        "dreq": 0, "dresp": 0, "ereq": 0, "status": "OPEN" if director["enabled"] else "STOP",
        "req_tot": finished + in_flight, **_http_responses(director["responses"]),
    }


def _backend(director: dict, iid: int) -> dict:
    backends = director["backends"]
    capacities = [b["capacity"] for b in backends]
    up = [b for b in backends if b["state"] == "online"]
    return {
        **_common(director, "BACKEND", TYPE_BACKEND, iid, 0),
        "qcur": director["queued"]["current"], "qmax": director["queued"]["max"],
        "scur": director["load"]["current"], "smax": director["load"]["max"],
        "slim": sum(capacities) if capacities and all(capacities) else None,
        "stot": director["load"]["total"], "lbtot": director["load"]["total"],
        "dreq": 0, "dresp": 0, "econ": 0, "eresp": sum(b["failures"] for b in backends), "wretr": 0, "wredis": 0,
        "status": "UP" if director["enabled"] and up else "DOWN", "weight": len(up),
        "act": sum(1 for b in up if b["role"] != "backup"), "bck": sum(1 for b in up if b["role"] == "backup"),
        "req_tot": overview.total_responses(director), **_http_responses(director["responses"]),
        **_times([director, *backends]),
    }


def _server(director: dict, backend: dict, iid: int, sid: int, now: float) -> dict:
    backup = backend["role"] == "backup"
    check_status, check_code = _check(backend)
    changed = backend["health_changed"]
    return {
        **_common(director, backend["name"], TYPE_SERVER, iid, sid),
        "qcur": 0, "qmax": 0, "scur": backend["load"]["current"], "smax": backend["load"]["max"],
        "slim": backend["capacity"] or None, "stot": backend["load"]["total"], "lbtot": backend["load"]["total"],
        "dresp": 0, "econ": 0, "eresp": backend["failures"], "wretr": 0, "wredis": 0,
        "status": SERVER_STATUS.get(backend["state"], "DOWN"), "weight": 1,
        "act": 0 if backup else 1, "bck": 1 if backup else 0,
        "lastchg": max(0, now - changed) if changed is not None else None, "downtime": _downtime(backend, now),
        "check_status": check_status, "check_code": check_code, "check_duration": _milliseconds(backend),
        **_http_responses(backend["responses"]),
        "bin": backend["bytes"]["received"], "bout": backend["bytes"]["sent"], **_times([backend]),
    }


def _downtime(backend: dict, now: float) -> float:
    changed = backend["health_changed"]
    current = max(0.0, now - changed) if backend["health"] == "offline" and changed is not None else 0.0
    return backend["downtime"] + current


def _milliseconds(backend: dict) -> int | None:
    duration = backend["last_check"]["duration"]
    return None if duration is None else round(duration * 1000)


def _check(backend: dict) -> tuple[str, int | None]:
    """HAProxy's check_status and check_code of the last check (the state before any check)."""
    check, error = backend["last_check"], backend["last_error"]
    if check["ok"] is None:  # no check stored yet: what the state says
        return {"undefined": "INI", "online": "L7OK"}.get(backend["health"]) or _failure(error), None
    if check["ok"]:
        return "L7OK", check["status"]
    if check["status"] is not None:
        return "L7STS", check["status"]
    return _failure(error), None


def _failure(error: str) -> str:
    if error.startswith(UNEXPECTED_STATUS):
        return "L7STS"
    return "L7TOUT" if TIMED_OUT in error else "L4CON"


async def stats_csv(request):
    response = HttpResponse(render(await overview.current()), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
