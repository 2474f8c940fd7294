"""Logging in to the admin of a running Director through its login form, as a browser does."""
from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 is the answer under test, not a page to follow


def admin_login(director, username: str, password: str) -> int:
    """Status of one admin login through the form, CSRF token included (302: logged in,
    200: the form again, wrong credentials; 429: refused by the throttle)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()), _NoRedirect)
    base = f"http://127.0.0.1:{director.admin_port}/admin/login/"
    page = opener.open(base, timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": token, "next": "/admin/"}).encode()
    try:
        return opener.open(base, data=form, timeout=30).status
    except urllib.error.HTTPError as exc:
        return exc.code
