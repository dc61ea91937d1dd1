"""The AI with the sandbox model configured: real litellm calls over HTTP, every one accounted."""

from __future__ import annotations

import pytest

from crm.models import AiCall, Contact
from crm.services.pipeline.deals import do_create_deal
from sandbox.model import SandboxModel
from tests.support.ai import MODEL_KEY as KEY
from tests.support.ai import AiService, configure_model, lead_writes, make_corpus
from tests.support.workspace import Workspace

API = "/api/v1"


async def test_a_model_draft_is_grounded_and_accounted(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    await configure_model(ai, workspace, model_base[0])
    boris, _ = await lead_writes(
        corpus.connection, "wamid.x1", "4915100000401", "Boris", "What's the price of the Pro plan?"
    )
    contact = await Contact.get(name="Boris")
    await do_create_deal(workspace.actor, title="Boris rollout", contact_id=contact.id)
    reply = await ai.http.post(f"{API}/conversations/{boris}/drafts", headers=workspace.headers)
    assert reply.status_code == 201, reply.text
    draft = reply.json()
    assert draft["source"] == "model"
    assert draft["model"] == "openai/sandbox-chat"
    assert draft["text"].startswith("According to our records:")
    assert draft["citations"]
    prompt = model_base[1].calls[-1]["last_user"]
    assert '"name": "Boris"' in prompt and '"title": "Boris rollout"' in prompt
    assert "What's the price of the Pro plan?" in prompt
    calls = await AiCall.filter(purpose="draft")
    assert len(calls) == 1
    call = calls[0]
    assert call.ok and call.prompt_tokens > 0 and call.completion_tokens > 0
    expected = (call.prompt_tokens * 1.0 + call.completion_tokens * 2.0) / 1_000_000
    assert call.cost_usd == pytest.approx(expected)
    metrics = (await ai.http.get(f"{API}/ai/metrics", headers=workspace.headers)).json()
    assert metrics["usage"]["by_purpose"]["draft"]["calls"] == 1


async def test_fallback_model_answers_and_both_attempts_are_counted(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    await make_corpus(workspace)
    await ai.run_handlers()
    await configure_model(
        ai,
        workspace,
        model_base[0],
        model="openai/sandbox-fail",
        fallbacks=["openai/sandbox-chat"],
        max_retries=0,
    )
    answer = await ai.http.post(
        f"{API}/ai/ask", json={"question": "What is the Pro plan price?"}, headers=workspace.headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["source"] == "model"
    call = await AiCall.get(purpose="ask")
    assert call.model == "openai/sandbox-chat"
    assert call.attempts == 2


async def test_a_model_that_is_down_falls_back_to_the_offline_drafter(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    api_base, model = model_base
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    await configure_model(ai, workspace, api_base, max_retries=1)
    model.add_faults("server_error", 10)
    reply = await ai.http.post(
        f"{API}/conversations/{corpus.anna}/drafts", headers=workspace.headers
    )
    assert reply.status_code == 201, reply.text
    draft = reply.json()
    assert draft["source"] == "offline"
    assert draft["model"] == "openai/sandbox-chat"  # the model that was asked and failed
    assert draft["rationale"].startswith(
        "The AI model openai/sandbox-chat did not answer (the model's server failed); this is "
        "the offline suggestion. Offline drafter:"
    )
    failed = await AiCall.get(purpose="draft")
    assert failed.ok is False and failed.error and KEY not in failed.error


async def test_the_readme_sandbox_model_steps_work_without_an_api_key(
    ai: AiService,
    workspace: Workspace,
    model_base: tuple[str, SandboxModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: set `model` and `api_base` only; the sandbox, like Ollama or vLLM, wants no key."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    reply = await ai.http.patch(
        f"{API}/ai/settings",
        json={"model": "openai/sandbox-chat", "api_base": model_base[0]},
        headers=workspace.headers,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["api_key_set"] is False
    reply = await ai.http.post(
        f"{API}/conversations/{corpus.anna}/drafts", headers=workspace.headers
    )
    assert reply.status_code == 201, reply.text
    draft = reply.json()
    assert draft["source"] == "model", draft["rationale"]
    assert draft["model"] == "openai/sandbox-chat"
    assert (await AiCall.get(purpose="draft")).ok


async def test_a_model_that_times_out_falls_back_saying_so_in_the_leads_language(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    api_base, model = model_base
    corpus = await make_corpus(workspace)
    await ai.run_handlers()
    await configure_model(ai, workspace, api_base, max_retries=0, timeout_seconds=1)
    model.add_faults("slow", 2, seconds=2.5)
    english = await ai.http.post(
        f"{API}/conversations/{corpus.anna}/drafts", headers=workspace.headers
    )
    assert english.status_code == 201, english.text
    assert english.json()["source"] == "offline"
    assert english.json()["rationale"].startswith(
        "The AI model openai/sandbox-chat did not answer (timeout); this is the offline suggestion."
    )
    russian = await ai.http.post(
        f"{API}/conversations/{corpus.maria}/drafts", headers=workspace.headers
    )
    assert russian.status_code == 201, russian.text
    assert russian.json()["rationale"].startswith(
        "AI-модель openai/sandbox-chat не ответила (истекло время ожидания), поэтому это "
        "офлайн-предложение."
    )


async def test_the_model_classifies_when_configured(
    ai: AiService, workspace: Workspace, model_base: tuple[str, SandboxModel]
) -> None:
    await configure_model(ai, workspace, model_base[0])
    reply = await ai.http.post(
        f"{API}/ai/classify",
        json={"text": "Tell me more [[intent:question]]"},
        headers=workspace.headers,
    )
    assert reply.json() == {
        "intent": "question",
        "confidence": 0.9,
        "language": "en",
        "source": "model",
    }
    assert await AiCall.filter(purpose="classify", ok=True).count() == 1
