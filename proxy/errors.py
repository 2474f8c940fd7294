"""Upstream failures as one exception tree.

Each class carries what the dispatcher needs to decide: the status the client gets when no
retry is left (`status`), whether the request may be re-sent to another backend even when its
method is not idempotent (`safe_to_resend`: the backend provably did not process it), and
whether the backend is marked offline (`marks_offline`). Timeouts are also
`asyncio.TimeoutError` (== builtin TimeoutError), so generic timeout handling still works.
"""


class UpstreamError(Exception):
    """The backend failed this request."""

    status = 502
    expected_failure = True  # the server logs it as one line, without a traceback
    safe_to_resend = False
    marks_offline = True
    default_message = "upstream failure"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message)

    @property
    def reason(self) -> str:
        return str(self)


class ConnectError(UpstreamError):
    """No connection could be made (refused, unreachable, no such socket, DNS)."""

    safe_to_resend = True
    default_message = "connection refused"


class ConnectTimeout(ConnectError, TimeoutError):
    status = 504
    default_message = "connect timeout"


class ReadTimeout(UpstreamError, TimeoutError):
    status = 504
    default_message = "read timeout"


class WriteTimeout(UpstreamError, TimeoutError):
    status = 504
    default_message = "write timeout"


class ConnectionClosed(UpstreamError):
    """The backend closed or reset the connection before the response was complete."""

    default_message = "connection closed by backend"


class StaleConnection(ConnectionClosed):
    """A reused keep-alive connection ended before any response byte: most likely the
    backend closed it as idle just as the request went out. Says nothing about the
    backend's health (it is neither marked offline nor counted toward
    passive_failure_threshold). Idempotent requests were already re-sent on a new
    connection by the client; this one was not, as it may have been read and processed."""

    marks_offline = False
    default_message = "reused connection closed before the response"


class ProtocolError(UpstreamError):
    """The backend's bytes do not form a valid response (HTTP or FastCGI)."""

    default_message = "malformed response"


class BackendOverloaded(UpstreamError):
    """FastCGI FCGI_OVERLOADED: the application refused the request without processing it."""

    status = 503
    safe_to_resend = True
    default_message = "backend overloaded"


class RequestRejected(UpstreamError):
    """FastCGI FCGI_CANT_MPX_CONN / FCGI_UNKNOWN_ROLE or another protocol-level refusal."""

    default_message = "request rejected by backend"
