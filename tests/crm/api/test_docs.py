"""/docs and /redoc work offline: every asset they load comes from this service."""

from __future__ import annotations

import re

import httpx
import pytest

# src="...", href="...", spec-url="..." and url: '...' inside the page's script.
_REFERENCE = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl["']?\s*:\s*["']([^"']+)["']"""
)


def _references(html: str) -> list[str]:
    return [a or b for a, b in _REFERENCE.findall(html)]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", {"application/javascript", "text/javascript", "text/css"}),
        ("/redoc", {"application/javascript", "text/javascript"}),
    ],
)
async def test_docs_pages_load_only_same_origin_assets(
    client: httpx.AsyncClient, page: str, assets: set[str]
) -> None:
    reply = await client.get(page)
    assert reply.status_code == 200
    html = reply.text
    assert "http://" not in html and "https://" not in html  # no CDN, no web fonts
    assert '"validatorUrl": null' in html or page == "/redoc"  # no badge from swagger.io
    references = _references(html)
    assert references, html
    kinds = set()
    for url in references:
        assert url.startswith("/") and not url.startswith("//"), url
        loaded = await client.get(url)
        assert loaded.status_code == 200, url
        kind = loaded.headers["content-type"].split(";")[0]
        kinds.add(kind)
        if url.endswith(".js"):
            assert kind in assets and len(loaded.content) > 100_000, url
        if url.endswith(".css"):
            assert kind == "text/css" and len(loaded.content) > 10_000, url
    assert "application/json" in kinds  # the OpenAPI document itself
    assert kinds & assets - {"application/json"}
