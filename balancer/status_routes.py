"""Which directors no route reaches (SPEC §13: marked on the status page).

Routes match in order and the first match wins (SPEC §11), so a director is unreached when
no route passes to it, or when every route passing to it comes after a route that takes all
of its requests: an earlier route for any host (or the same host) whose path is a prefix of
its path. Pure: takes the route rows in match order.
"""
from __future__ import annotations

ANY_HOST = ("", "*")
NO_ROUTE = "no route passes requests to this director"


def _catches_all_of(earlier: dict, route: dict) -> bool:
    host_covered = earlier["host"] in ANY_HOST or earlier["host"].lower() == route["host"].lower()
    return host_covered and route["path"].startswith(earlier["path"])


def _shadow(routes: list[dict], index: int) -> dict | None:
    """The first earlier route that takes every request routes[index] would match."""
    return next((earlier for earlier in routes[:index] if _catches_all_of(earlier, routes[index])), None)


def unreached(routes: list[dict], director_names) -> dict[str, str]:
    """Director name -> why no request reaches it, for the directors of `director_names`
    that no route reaches. `routes`: dicts with id, host, path, director ("" for road
    warriors), in match order."""
    reasons = {}
    for name in director_names:
        passing = [i for i, route in enumerate(routes) if route["director"] == name]
        if not passing:
            reasons[name] = NO_ROUTE
            continue
        shadows = [_shadow(routes, i) for i in passing]
        if all(shadow is not None for shadow in shadows):
            first = shadows[0]
            reasons[name] = (f"every route to this director comes after route {first['id']} "
                             f"({first['host'] or '*'}{first['path']}), which takes all of its requests")
    return reasons
