"""The wording shared by the bot's views: a draft's header says who wrote it."""

from __future__ import annotations

import pytest

from bot.i18n import build_i18n, rendering
from bot.texts import render_draft
from crm.models import Draft, DraftSource


def _draft(source: DraftSource, model: str | None) -> Draft:
    return Draft(text="Hi Anna <3", source=source, model=model, rationale="why")


@pytest.mark.parametrize(
    ("locale", "model_head", "fallback_head", "offline_head"),
    [
        (
            "en",
            "✨ <b>Draft</b> by openai/sandbox-chat",
            "✨ <b>Draft</b> (offline suggestion: the AI model openai/sandbox-chat did not answer)",
            "✨ <b>Draft</b> (offline drafter, no AI model configured)",
        ),
        (
            "ru",
            "openai/sandbox-chat",
            "✨ <b>Черновик</b> (офлайн-предложение: AI-модель openai/sandbox-chat не ответила)",
            "✨ <b>Черновик</b>",
        ),
    ],
)
def test_a_drafts_header_names_its_model_or_says_the_model_failed(
    locale: str, model_head: str, fallback_head: str, offline_head: str
) -> None:
    with rendering(build_i18n(), locale):
        by_model = render_draft(_draft(DraftSource.MODEL, "openai/sandbox-chat"))
        fallback = render_draft(_draft(DraftSource.OFFLINE, "openai/sandbox-chat"))
        offline = render_draft(_draft(DraftSource.OFFLINE, None))
    assert model_head in by_model.splitlines()[0]
    assert fallback.splitlines()[0] == fallback_head
    assert offline.splitlines()[0].startswith(offline_head)
    assert "openai" not in offline.splitlines()[0]
    assert "Hi Anna &lt;3" in fallback  # the text stays escaped
