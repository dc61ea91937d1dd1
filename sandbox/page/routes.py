"""``GET /sandbox``: play a lead on WhatsApp or Telegram and watch the CRM side at once.

The page is static; its script talks to the emulators' control API (as the lead) and to the
CRM's own REST API with an API key (as the operator). The key comes from a single-use sign-in
link (``/sandbox?signin=TOKEN``, exchanged once at ``POST /sandbox/session``) or is pasted by
the visitor; it only sees its own workspace, and the lead pane shows only that workspace's
connections. Text from either side is put into the page with ``textContent`` only, so nothing
typed can inject markup, and the Content-Security-Policy lets the page load nothing from
another origin. The app serves every ``/sandbox`` path but the emulators' wire APIs to
loopback clients only (see ``is_control_path``).

The page is ``templates/page.html`` (Jinja2, autoescaped); its script, style sheet and icon are
files under ``static/``, shipped as package data.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, Field

from crm.services.accounts.signin import do_redeem_sign_in

router = APIRouter()

# What the adapters, the operator bot and litellm call (token-checked like the real APIs);
# every other /sandbox path is the control API and the page.
_WIRE_PATH = re.compile(r"^/sandbox/(telegram/(file/)?bot\d+:[^/]*/|graph/|llm/v1/)")
# A request relayed by a proxy came from elsewhere, whatever address the proxy connects from.
_PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    # The sign-in token is in the address until the script removes it: never sent onwards.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def is_control_path(path: str) -> bool:
    """True for the sandbox page and control API, False for the emulators' wire APIs."""
    if path != "/sandbox" and not path.startswith("/sandbox/"):
        return False
    return _WIRE_PATH.match(path) is None


def from_this_machine(request: Request) -> bool:
    """True when the client is on loopback and no proxy relayed the request."""
    if any(name in request.headers for name in _PROXY_HEADERS):
        return False
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class SessionIn(BaseModel):
    """``POST /sandbox/session``: the token of a sign-in link."""

    token: str = Field(min_length=1, max_length=200)


_STATIC = resources.files(__package__) / "static"
_TEMPLATES = Environment(
    loader=PackageLoader(__package__, "templates"), autoescape=select_autoescape(default=True)
)
SCRIPT_URL = "/sandbox/page.js"
STYLE_URL = "/sandbox/page.css"
ICON_URL = "/sandbox/favicon.svg"


def _static(name: str) -> str:
    return (_STATIC / name).read_text(encoding="utf-8")


# Rendered once: the page has no per-request content (the script fetches everything).
PAGE = _TEMPLATES.get_template("page.html").render(
    title="CRM sandbox", script_url=SCRIPT_URL, style_url=STYLE_URL, icon_url=ICON_URL
)
SCRIPT = _static("page.js")
STYLE = _static("page.css")
ICON = _static("favicon.svg")


def _asset(body: str, media_type: str) -> Response:
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/sandbox", response_class=HTMLResponse, include_in_schema=False)
async def sandbox_page() -> HTMLResponse:
    """The sandbox page: one side plays the lead, the other shows the CRM inbox."""
    return HTMLResponse(PAGE, headers=SECURITY_HEADERS)


@router.get(SCRIPT_URL, include_in_schema=False)
async def sandbox_script() -> Response:
    """The page's script (served, not inline, so the CSP can forbid inline code)."""
    return _asset(SCRIPT, "text/javascript; charset=utf-8")


@router.get(STYLE_URL, include_in_schema=False)
async def sandbox_style() -> Response:
    """The page's style sheet."""
    return _asset(STYLE, "text/css; charset=utf-8")


@router.get(ICON_URL, include_in_schema=False)
async def sandbox_icon() -> Response:
    """The page's icon (else the browser asks for /favicon.ico and gets a 404)."""
    return _asset(ICON, "image/svg+xml")


@router.post("/sandbox/session", tags=["sandbox"])
async def sandbox_session(data: SessionIn) -> dict[str, object]:
    """Exchange a sign-in link's token, once, for an API key scoped to its workspace."""
    issued = await do_redeem_sign_in(data.token)
    await issued.api_key.fetch_related("tenant")
    return {
        "api_key": issued.token,
        "tenant_id": issued.api_key.tenant_id,
        "workspace": issued.api_key.tenant.name,
    }
