"""An aiohttp session logged into a real runproxy's admin (its session cookie in the jar)."""
from __future__ import annotations

import re

import aiohttp

from tests.support.director import Director


def csrf_token(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


async def admin_login(d: Director, user: str, password: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(d.admin_url, cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: IP hosts
    try:
        async with session.get("/admin/login/") as response:
            page = await response.text()
        form = {"username": user, "password": password, "csrfmiddlewaretoken": csrf_token(page), "next": "/admin/"}
        async with session.post("/admin/login/", data=form, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
    except BaseException:
        await session.close()
        raise
    return session
