"""The model emulator over HTTP: OpenAI's chat completions and models, and a control API."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.model.replies import (
    FAIL_MODEL,
    MODELS,
    completion_body,
    prompt_tokens,
    respond,
    text_of,
    tool_names,
)
from sandbox.model.state import FaultRequest, SandboxModel


def openai_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _sleep_unless_disconnected(request: Request, seconds: float) -> None:
    # A client that timed out has gone: stop stalling so servers shut down promptly.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(0.05, left))
        if await request.is_disconnected():
            return


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


_UNAUTHORIZED = (
    401,
    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
    "invalid_request_error",
    "invalid_api_key",
)


# --- HTTP ---------------------------------------------------------------------------------


def build_router(prefix: str = "/sandbox/llm", model: SandboxModel | None = None) -> APIRouter:
    """The emulator's routes under ``prefix``; ``model`` holds its state (a fresh one if None)."""
    state = model if model is not None else SandboxModel()
    router = APIRouter(prefix=prefix, tags=["sandbox"])

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse:
        if not _authorized(request):
            return openai_error(*_UNAUTHORIZED)
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "The body is not valid JSON.", "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error(400, "The body must be a JSON object.", "invalid_request_error")
        name = body.get("model")
        messages = body.get("messages")
        tools = body.get("tools") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return openai_error(
                400,
                "'messages' must be a list of objects.",
                "invalid_request_error",
                param="messages",
            )
        if not isinstance(tools, list):
            return openai_error(
                400, "'tools' must be a list.", "invalid_request_error", param="tools"
            )
        record: dict[str, Any] = {
            "model": name,
            "messages": len(messages),
            "tools": tool_names(tools),
            # What the client asked, so tests can check the prompt that went over the wire.
            "last_user": next(
                (
                    text_of(m.get("content"))
                    for m in reversed(messages)
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                "",
            ),
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "status": 200,
            "fault": None,
        }
        state.calls.append(record)
        if body.get("stream"):
            record["status"] = 400
            return openai_error(
                400,
                "Streaming is not supported by the sandbox model.",
                "invalid_request_error",
                "unsupported_parameter",
                param="stream",
            )
        if name not in MODELS:
            record["status"] = 404
            return openai_error(
                404,
                f"The model '{name}' does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )
        fault = state.next_fault()
        if fault is not None:
            record["fault"] = fault.kind
            if fault.kind == "server_error":
                record["status"] = 500
                return openai_error(
                    500, "The sandbox model had an injected server error.", "server_error"
                )
            if fault.kind == "rate_limit":
                record["status"] = 429
                retry_after = f"{fault.seconds:g}" if fault.seconds else "1"
                return openai_error(
                    429,
                    "Rate limit reached for the sandbox model (injected).",
                    "requests",
                    "rate_limit_exceeded",
                    headers={"retry-after": retry_after},
                )
            await _sleep_unless_disconnected(request, fault.seconds)
        if name == FAIL_MODEL:
            record["status"] = 500
            return openai_error(500, "The sandbox-fail model always fails.", "server_error")
        reply = respond(messages, tools)
        return JSONResponse(
            completion_body(state, str(name), reply, prompt_tokens(messages, tools))
        )

    @router.get("/v1/models", response_model=None)
    async def list_models(request: Request) -> JSONResponse:
        if not _authorized(request):
            return openai_error(*_UNAUTHORIZED)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "sandbox"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    @router.post("/faults")
    async def add_faults(fault: FaultRequest) -> dict[str, Any]:
        state.add_faults(fault.kind, fault.count, fault.seconds)
        return {"pending": len(state.faults)}

    @router.get("/calls")
    async def calls() -> dict[str, Any]:
        return {"calls": list(state.calls)}

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    return router


def create_model_app(model: SandboxModel | None = None, prefix: str = "/sandbox/llm") -> FastAPI:
    """An app serving the sandbox model alone (tests, local development)."""
    state = model if model is not None else SandboxModel()
    app = FastAPI(title="Sandbox model", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox_model = state
    app.include_router(build_router(prefix, state))
    return app
