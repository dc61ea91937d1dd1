"""Point pywa at another Graph host (the sandbox) without touching pywa.

pywa hardcodes ``https://graph.facebook.com/v{version}`` as its session's base URL, so the host
is swapped below it, in the httpx transport; every other URL (e.g. a media download URL the
emulator hands out) passes through unchanged.
"""

from __future__ import annotations

import httpx

GRAPH_HOST = "graph.facebook.com"


class GraphRewriteTransport(httpx.AsyncBaseTransport):
    """Sends ``https://graph.facebook.com/<path>`` to ``<base_url>/<path>`` instead."""

    def __init__(self, base_url: str, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._base = httpx.URL(base_url.rstrip("/"))
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite Graph requests, then hand every request to the inner transport."""
        if request.url.host == GRAPH_HOST:
            request.url = self._base.copy_with(
                raw_path=self._base.raw_path.rstrip(b"/") + request.url.raw_path
            )
            # httpx fixed the Host header when the request was built; keep it consistent.
            request.headers["Host"] = self._base.netloc.decode("ascii")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
