"""The request's fields for a head read in one pass, and Twisted's tables of them on demand.

`proxy.server_channel` reads the usual request head in one pass (proxy.server_head) into a
list of checked, lower-cased fields, which the traffic request hands to the application as
the ASGI scope's headers. Twisted's `Headers` table of the same fields is filled only when
something asks for it (daphne's management requests, a refused request's log line): filing
each field there costs a name lookup and a list per field that the traffic path never reads.

The same goes for the rest of what Twisted's `Request.__init__` makes for every request: the
response's extra-field table (`responseHeaders`, used when the server adds `Connection:
close` or answers an error itself) and the peer and host address objects (`client`, `host`:
the traffic path has the channel's scope lists). `LeanRequestMixin` makes each on first use.
"""
from __future__ import annotations

from collections.abc import Sequence

from twisted.web.http_headers import Headers

from proxy.twisted_compat import file_fields


class ParsedFieldsMixin:
    """For Twisted `Request` subclasses (before it in the MRO): `requestHeaders` filled from
    `parsed_fields` on first use, and `field_values` reading whichever the request has."""

    parsed_fields: list | None = None  # [(lower-case name, value)], checked: a head read in one pass
    _header_table: Headers | None = None
    _table_filed = False

    @property
    def requestHeaders(self) -> Headers:  # noqa: N802 - Twisted's name
        """Twisted's table of the request's fields. For a head read in one pass it is filled
        from `parsed_fields` when something first asks for it (daphne, a refused request's
        log line): the traffic path reads the list itself."""
        table = self._header_table
        if table is None:
            table = self._header_table = Headers()
        if not self._table_filed and self.parsed_fields is not None:
            self._table_filed = True
            file_fields(table, self.parsed_fields)
        return table

    @requestHeaders.setter
    def requestHeaders(self, table: Headers) -> None:  # noqa: N802 - Twisted's name
        self._header_table = table

    def field_values(self, name: bytes) -> Sequence[bytes]:
        """The values of the request's field `name` (lower case), in order."""
        fields = self.parsed_fields
        if fields is None:
            return self.requestHeaders.getRawHeaders(name, [])
        return [value for field, value in fields if field == name]


class _ChannelAddress:
    """A request's address attribute (`client`, `host`), asked of its channel on first read;
    settable, as Twisted's `Request.__init__` sets it."""

    def __init__(self, method: str):
        self.method = method
        self.key = ""

    def __set_name__(self, owner, name: str) -> None:
        self.key = f"_{name}_address"

    def __get__(self, request, owner=None):
        if request is None:
            return self
        address = request.__dict__.get(self.key)
        if address is None:
            address = request.__dict__[self.key] = getattr(request.channel, self.method)()
        return address

    def __set__(self, request, address) -> None:
        request.__dict__[self.key] = address


class LeanRequestMixin(ParsedFieldsMixin):
    """Twisted's `Request.__init__` without the objects most requests never use (see the
    module docstring); `proxy.twisted_compat.REQUEST_STATE` lists what that `__init__` sets,
    and the adapter's start-up check fails if Twisted's sets anything else."""

    _response_table: Headers | None = None

    def __init__(self, channel, queued=None):
        self.channel = channel
        self.transport = channel.transport
        self.notifications = []
        self.received_cookies = {}
        self.cookies = []
        self.queued = False
        self._parsePOSTFormSubmission = False  # not http.Request: a slow module proxy

    @property
    def responseHeaders(self) -> Headers:  # noqa: N802 - Twisted's name
        table = self._response_table
        if table is None:
            table = self._response_table = Headers()
        return table

    @responseHeaders.setter
    def responseHeaders(self, table: Headers) -> None:  # noqa: N802 - Twisted's name
        self._response_table = table

    def extra_response_fields(self):
        """The fields the server added to the response ((name, values) pairs), if any."""
        table = self._response_table
        return () if table is None else table.getAllRawHeaders()

    client = _ChannelAddress("getPeer")
    host = _ChannelAddress("getHost")
