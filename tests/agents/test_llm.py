"""ModelClient through the real litellm against the sandbox model on loopback."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agents.llm import (
    CallUsage,
    ModelClient,
    ModelError,
    ToolSpec,
    _cost,
    load_litellm,
    parse_tool_call,
    scrub,
)
from crm.services.ai.settings import ModelConfig
from sandbox.model import DEFAULT_REPLY, SandboxModel, create_model_app
from tests.support.network import install_network_guard
from tests.support.servers import serve

API_KEY = "sk-sandbox-test"
ROOT = Path(__file__).resolve().parents[2]
NOTE_TOOL = ToolSpec(
    name="add_note",
    description="Add a note to the contact.",
    parameters={"type": "object", "properties": {"text": {"type": "string"}}},
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt to reach beyond loopback fails the test; returns the refused addresses."""
    return install_network_guard(monkeypatch)


@pytest.fixture(scope="module")
def sandbox() -> SandboxModel:
    """The emulator's state, shared by this module's server."""
    return SandboxModel()


@pytest.fixture(scope="module")
async def api_base(sandbox: SandboxModel) -> AsyncIterator[str]:
    """The sandbox model's OpenAI base URL on loopback."""
    async with serve(create_model_app(sandbox)) as url:
        yield f"{url}/sandbox/llm/v1"


@pytest.fixture(autouse=True)
def fresh_sandbox(sandbox: SandboxModel) -> None:
    """Every test starts without faults or recorded calls."""
    sandbox.reset()


class Sink:
    """Collects the usage of every call."""

    def __init__(self) -> None:
        self.usages: list[CallUsage] = []

    async def __call__(self, usage: CallUsage) -> None:
        self.usages.append(usage)


def spec(api_base: str, model: str = "openai/sandbox-chat", **kw: Any) -> ModelConfig:
    """A spec for the sandbox with the test key."""
    return ModelConfig(model=model, api_base=api_base, api_key=API_KEY, **kw)


def user(text: str) -> dict[str, Any]:
    """A user message."""
    return {"role": "user", "content": text}


def test_importing_the_module_leaves_litellm_unloaded() -> None:
    code = "import sys, agents.llm; print('litellm' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


async def test_plain_reply_with_usage_cost_and_latency(
    api_base: str, sandbox: SandboxModel, offline: list[object]
) -> None:
    sink = Sink()
    priced = spec(api_base, input_cost_per_million=1.0, output_cost_per_million=2.0)
    completion = await ModelClient(on_call=sink).complete(priced, [user("Hello there")])
    assert completion.text == DEFAULT_REPLY
    assert completion.tool_calls == ()
    assert completion.finish_reason == "stop"
    usage = completion.usage
    assert usage.ok and usage.error is None
    assert usage.model == "openai/sandbox-chat"
    assert usage.attempts == 1
    assert usage.prompt_tokens == 2
    assert usage.completion_tokens > 0
    expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1_000_000
    assert usage.cost_usd == pytest.approx(expected)
    assert usage.latency_ms > 0
    assert sink.usages == [usage]
    assert [(c["model"], c["messages"], c["tools"]) for c in sandbox.calls] == [
        ("sandbox-chat", 1, [])
    ]
    assert offline == []  # litellm reached for nothing beyond loopback (price list, telemetry)


async def test_unpriced_unknown_model_costs_nothing(api_base: str) -> None:
    completion = await ModelClient().complete(spec(api_base), [user("hi")])
    assert completion.usage.ok
    assert completion.usage.cost_usd == 0.0


async def test_litellm_prices_models_it_knows() -> None:
    litellm = await load_litellm()
    response = litellm.ModelResponse(
        model="gpt-4o-mini",
        choices=[{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        usage={"prompt_tokens": 1000, "completion_tokens": 1000, "total_tokens": 2000},
    )
    cost = _cost(ModelConfig(model="openai/gpt-4o-mini"), "openai/gpt-4o-mini", response, 0, 0)
    assert cost > 0


async def test_tool_calls_are_parsed_including_invalid_json(
    api_base: str, sandbox: SandboxModel
) -> None:
    text = 'Please [[tool:add_note {"text":"hi"}]] then [[tool:add_note {"text": hi}]]'
    completion = await ModelClient().complete(spec(api_base), [user(text)], tools=[NOTE_TOOL])
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""
    first, second = completion.tool_calls
    assert (first.id, first.name, first.arguments) == ("call_1", "add_note", {"text": "hi"})
    assert first.raw_arguments == '{"text":"hi"}'
    assert (second.id, second.arguments, second.raw_arguments) == (
        "call_2",
        {},
        '{"text": hi}',
    )
    assert sandbox.calls[0]["tools"] == ["add_note"]


def test_tool_call_arguments_that_are_not_an_object_become_empty() -> None:
    raw = {"id": "c", "function": {"name": "f", "arguments": "[1, 2]"}}
    assert parse_tool_call(raw, 1).arguments == {}
    assert parse_tool_call({"function": {"name": "f", "arguments": ""}}, 3).id == "call_3"


async def test_tool_result_turn_answers_done(api_base: str) -> None:
    client = ModelClient()
    messages: list[dict[str, Any]] = [user('[[tool:add_note {"text":"hi"}]]')]
    first = await client.complete(spec(api_base), messages, tools=[NOTE_TOOL])
    call = first.tool_calls[0]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.raw_arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "note 12 saved"},
    ]
    second = await client.complete(spec(api_base), messages, tools=[NOTE_TOOL])
    assert second.text == "Done. add_note: note 12 saved"
    assert second.tool_calls == ()
    assert second.finish_reason == "stop"


async def test_falls_back_after_retrying_the_failing_model(
    api_base: str, sandbox: SandboxModel
) -> None:
    sink = Sink()
    chain = spec(api_base, "openai/sandbox-fail", fallbacks=("openai/sandbox-chat",), max_retries=1)
    completion = await ModelClient(on_call=sink).complete(chain, [user("hi")])
    assert completion.text == DEFAULT_REPLY
    assert completion.usage.model == "openai/sandbox-chat"
    assert completion.usage.attempts == 3  # twice the failing model, once the fallback
    assert [(c["model"], c["status"]) for c in sandbox.calls] == [
        ("sandbox-fail", 500),
        ("sandbox-fail", 500),
        ("sandbox-chat", 200),
    ]
    assert len(sink.usages) == 1 and sink.usages[0].ok


async def test_rate_limit_is_retried_then_succeeds(api_base: str, sandbox: SandboxModel) -> None:
    sandbox.add_faults("rate_limit", 1)
    completion = await ModelClient().complete(spec(api_base, max_retries=1), [user("hi")])
    assert completion.usage.ok
    assert completion.usage.attempts == 2
    assert [c["status"] for c in sandbox.calls] == [429, 200]


async def test_server_errors_beyond_the_retries_fail(api_base: str, sandbox: SandboxModel) -> None:
    sandbox.add_faults("server_error", 3)
    with pytest.raises(ModelError) as raised:
        await ModelClient().complete(spec(api_base, max_retries=2), [user("hi")])
    assert raised.value.usage.attempts == 3
    assert "500" in (raised.value.usage.error or "")


async def test_slow_answer_times_out_and_is_accounted(api_base: str, sandbox: SandboxModel) -> None:
    sandbox.add_faults("slow", 2, seconds=3.0)
    sink = Sink()
    started = time.perf_counter()
    with pytest.raises(ModelError) as raised:
        await ModelClient(on_call=sink).complete(
            spec(api_base, timeout_seconds=0.3, max_retries=1), [user("hi")]
        )
    assert time.perf_counter() - started < 2.5
    usage = raised.value.usage
    assert not usage.ok
    assert usage.attempts == 2
    assert usage.model == "openai/sandbox-chat"
    assert "timeout" in (usage.error or "").lower()
    assert usage.latency_ms >= 600
    assert sink.usages == [usage]


async def test_unknown_model_fails_without_retrying(api_base: str, sandbox: SandboxModel) -> None:
    sink = Sink()
    with pytest.raises(ModelError) as raised:
        await ModelClient(on_call=sink).complete(
            spec(api_base, "openai/sandbox-nope", max_retries=3), [user("hi")]
        )
    usage = raised.value.usage
    assert (usage.ok, usage.attempts, usage.model) == (False, 1, "openai/sandbox-nope")
    assert "404" in (usage.error or "")
    assert sink.usages == [usage]
    assert len(sandbox.calls) == 1


async def test_non_retryable_error_moves_on_to_the_fallback(api_base: str) -> None:
    chain = spec(api_base, "openai/sandbox-nope", fallbacks=("openai/sandbox-chat",))
    completion = await ModelClient().complete(chain, [user("hi")])
    assert (completion.usage.model, completion.usage.attempts) == ("openai/sandbox-chat", 2)


async def test_a_failing_usage_sink_does_not_break_the_call(
    api_base: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(usage: CallUsage) -> None:
        raise RuntimeError("database down")

    completion = await ModelClient(on_call=broken).complete(spec(api_base), [user("hi")])
    assert completion.text == DEFAULT_REPLY
    assert "usage sink failed" in caplog.text


async def test_the_key_and_the_prompts_stay_out_of_logs_and_errors(
    api_base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "sk-sandbox-test-SECRET-4242"
    marker = "Anna Schmidt, +49 151 0000 0101"
    client = ModelClient()
    keyed = ModelConfig(model="openai/sandbox-chat", api_base=api_base, api_key=secret)
    await client.complete(keyed, [user(f"My name is {marker}")], tools=[NOTE_TOOL])
    failing = ModelConfig(model="openai/sandbox-fail", api_base=api_base, api_key=secret)
    with pytest.raises(ModelError) as raised:
        await client.complete(failing, [user(f"My name is {marker}")])
    assert "sandbox-fail attempt 2 failed" in caplog.text  # the failure was logged...
    texts = [caplog.text, str(raised.value), raised.value.usage.error or "", repr(keyed)]
    for text in texts:  # ...without the key or the lead's data
        assert secret not in text
        assert marker not in text


async def test_unreachable_endpoint_fails_offline(
    offline: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    remote = ModelConfig(
        model="openai/gpt-4o-mini",
        api_base="http://192.0.2.10/v1",
        api_key=API_KEY,
        max_retries=0,
        timeout_seconds=2,
    )
    with pytest.raises(ModelError) as raised:
        await ModelClient().complete(remote, [user("hi")])
    assert raised.value.usage.attempts == 1
    assert any("192.0.2.10" in str(address) for address in offline)


def test_scrub_removes_credentials() -> None:
    text = "bad key sk-abcdefghij, header Bearer xyz123, api_key='k1' and mine0"
    cleaned = scrub(text, "mine0")
    for secret in ("sk-abcdefghij", "xyz123", "k1", "mine0"):
        assert secret not in cleaned


def test_empty_answer_error_carries_a_failed_usage() -> None:
    usage = CallUsage("openai/m", 3, 0, 0.0, 1.0, 1, ok=True)
    error = ModelError.empty(usage)
    assert (error.usage.ok, error.usage.prompt_tokens) == (False, 3)
    assert "empty" in str(error)
