"""The request's fields for a head read in one pass, and Twisted's table of them on demand.

`proxy.server_channel` reads the usual request head in one pass (proxy.server_head) into a
list of checked, lower-cased fields, which the traffic request hands to the application as
the ASGI scope's headers. Twisted's `Headers` table of the same fields is filled only when
something asks for it (daphne's management requests, a refused request's log line): filing
each field there costs a name lookup and a list per field that the traffic path never reads.
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
