"""Upstream clients: one `Upstream` per backend address, chosen by protocol."""
from proxy.addresses import BackendAddress
from proxy.upstream.base import RequestBody, Timeouts, Upstream, UpstreamRequest, UpstreamResponse

__all__ = ["make_upstream", "Timeouts", "Upstream", "UpstreamRequest", "UpstreamResponse", "RequestBody"]


def make_upstream(address: BackendAddress) -> Upstream:
    """The client for `address`, by its protocol."""
    if address.protocol == "fastcgi":
        from proxy.upstream.fastcgi import FastCGIUpstream

        return FastCGIUpstream(address)
    from proxy.upstream.http import HTTPUpstream

    return HTTPUpstream(address)
