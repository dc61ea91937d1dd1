"""How often the offline drafter reuses the right past answer for a paraphrased question.

Set-up, in a throw-away SQLite database: one workspace whose history is the answered questions
of ``bench/data/drafts_history.json`` (22 topics, each asked twice in English and twice in
Russian in separate conversations, every time with the same answer, plus small-talk exchanges),
every message embedded as workers leave them. Then each paraphrase arrives in a new
conversation and the offline drafter answers it; a hit is a draft that cites a past question of
the same topic (so it reuses that topic's answer).

Two sets of paraphrases: ``dev`` (in the history file) is what ranking choices were tuned on;
``held-out`` (``bench/data/drafts_heldout.json``, written separately and differently) is only
reported. Baselines beside the product: a random past answer, the drafter before issue 15
(the first past question over the similarity bar, in fused-search order), and the product
without its multilingual model (MiniLM and spelling only).
Run: ``python -m bench.eval_drafts [--seed 7]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import asyncio
import datetime as dt
import json
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents.assistant import Assistant
from agents.draft_context import DraftContext, load_context
from agents.drafting import Drafter
from agents.embeddings import Embedder
from bench.bench_drafts import whatsapp_workspace
from crm.db import close_db, init_db, migrate_db
from crm.infrastructure.cipher import CredentialCipher
from crm.messaging import InboundMessage
from crm.models import Conversation, Direction, MemorySource
from crm.services.ai import memory as store
from crm.services.inbox import inbound_messages
from crm.services.inbox.outbound import Outgoing, do_send_message

DATA = Path(__file__).parent / "data"
SECRET = "bench-eval-drafts-secret-0123456789abcdef"
NAMES_EN = ["Anna Schmidt", "John Miller", "Emma Brown", "Oliver Stone", "Laura Weiss"]
NAMES_RU = ["Ольга Смирнова", "Иван Петров", "Мария Иванова", "Сергей Козлов", "Елена Орлова"]

Pick = Callable[[Drafter, DraftContext], Awaitable[int | None]]


Questions = list[tuple[str, str, str]]


def load_sets() -> tuple[dict[str, Any], Questions, Questions]:
    """The history file, its dev and held-out paraphrases (topic, language, text).

    Questions nothing in the history answers have the topic "-": for them a reuse is wrong.
    """
    history = json.loads((DATA / "drafts_history.json").read_text(encoding="utf-8"))
    held = json.loads((DATA / "drafts_heldout.json").read_text(encoding="utf-8"))
    dev = [
        (topic["id"], lang, text)
        for topic in history["topics"]
        for lang in ("en", "ru")
        for text in topic[f"dev_{lang}"]
    ]
    held_out = [(str(t), str(lang), str(text)) for t, lang, text in held["questions"]]
    dev += [("-", lang, text) for lang, text in history["dev_unanswered"]]
    held_out += [("-", lang, text) for lang, text in held["unanswered"]]
    # A paraphrase that is also a history question would measure recall, not retrieval.
    asked = {
        q.casefold()
        for topic in history["topics"]
        for lang in ("en", "ru")
        for q in topic[f"history_{lang}"]
    }
    assert not {t.casefold() for _, _, t in dev + held_out} & asked
    assert not {t.casefold() for _, _, t in dev} & {t.casefold() for _, _, t in held_out}
    return history, dev, held_out


async def product_pick(drafter: Drafter, context: DraftContext) -> int | None:
    """The conversation the product's offline draft cites."""
    draft = await drafter.offline_draft(context)
    if not draft.citations:
        return None
    return draft.citations[0].get("conversation_id")


async def minilm_pick(drafter: Drafter, context: DraftContext) -> int | None:
    """The product without the multilingual model (MiniLM and spelling only, as before it)."""
    multilingual, drafter.multilingual = drafter.multilingual, None
    try:
        return await product_pick(drafter, context)
    finally:
        drafter.multilingual = multilingual


async def legacy_pick(drafter: Drafter, context: DraftContext) -> int | None:
    """The drafter before issue 15: the first similar-enough past question in fused order."""
    tenant_id = context.conversation.tenant_id
    similar = await drafter.memory.search(
        tenant_id,
        context.question,
        8,
        sources=(MemorySource.MESSAGE,),
        direction=Direction.IN.value,
        exclude_conversation=context.conversation.id,
    )
    for passage in similar:
        if not drafter._relevant(passage, context.question):
            continue
        reply = await store.reply_after(tenant_id, passage.chunk)
        if reply is None or not reply.text.strip():
            continue
        return passage.chunk.conversation_id
    return None


async def run(seed: int, only_dev: bool = False, show_misses: bool = False) -> None:
    """Load the history, draft every paraphrase, print hit rates."""
    history, dev, held_out = load_sets()
    if only_dev:
        held_out = []
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite://{workdir}/eval.sqlite3"
        await migrate_db(url)
        await init_db(url)
        try:
            cipher = CredentialCipher(SECRET)
            assistant = Assistant(cipher, Path(workdir) / "index", Embedder())
            await assistant.warm_up()
            actor, connection = await whatsapp_workspace("Eval", cipher)
            counter = 0

            async def converse(text: str, reply: str | None, name: str) -> int:
                nonlocal counter
                counter += 1
                received = await inbound_messages.receive_message(
                    connection,
                    InboundMessage(
                        external_id=f"wamid.eval{counter}",
                        sender_id=f"4915{counter:08d}",
                        sender_name=name,
                        phone=f"+4915{counter:08d}",
                        sent_at=dt.datetime.now(dt.UTC),
                        text=text,
                    ),
                )
                if reply is None:
                    return received.conversation_id
                await assistant.memory.remember(MemorySource.MESSAGE, received.message.id)
                first = name.split()[0]
                sent = await do_send_message(
                    actor, received.conversation_id, Outgoing(text=reply.format(name=first))
                )
                await assistant.memory.remember(MemorySource.MESSAGE, sent.id)
                return received.conversation_id

            started = time.perf_counter()
            topic_of: dict[int, str] = {}
            answers: list[int] = []
            pairs = [
                (topic["id"], lang, question, topic[f"answer_{lang}"])
                for topic in history["topics"]  # type: ignore[attr-defined]
                for lang in ("en", "ru")
                for question in topic[f"history_{lang}"]
            ]
            pairs += [
                ("-", "ru" if any("а" <= c <= "я" for c in q.lower()) else "en", q, a)
                for q, a in history["distractors"]
            ]  # type: ignore[index]
            rng.shuffle(pairs)
            for topic_id, lang, question, answer in pairs:
                name = rng.choice(NAMES_RU if lang == "ru" else NAMES_EN)
                conversation_id = await converse(question, answer, name)
                topic_of[conversation_id] = topic_id
                answers.append(conversation_id)
            print(
                f"history: {len(pairs)} answered conversations "
                f"(loaded in {time.perf_counter() - started:.1f}s); seed {seed}"
            )

            async def measure(questions: Questions, pick: Pick | None) -> dict[str, float]:
                hits: dict[str, list[bool]] = defaultdict(list)
                for topic_id, lang, text in questions:
                    name = rng.choice(NAMES_RU if lang == "ru" else NAMES_EN)
                    conversation_id = await converse(text, None, name)
                    if pick is None:
                        cited: int | None = rng.choice(answers)
                    else:
                        conversation = await Conversation.get(id=conversation_id)
                        cited = await pick(assistant.drafter, await load_context(conversation))
                    if topic_id == "-":
                        hits["false"].append(cited in topic_of)
                        continue
                    hit = cited is not None and topic_of.get(cited) == topic_id
                    if show_misses and pick is product_pick and not hit:
                        got = topic_of.get(cited, "nothing") if cited is not None else "nothing"
                        print(f"    miss [{topic_id} -> {got}] {text}")
                    hits[lang].append(hit)
                    hits["all"].append(hit)
                return {k: sum(v) / len(v) for k, v in hits.items()}

            strategies: list[tuple[str, Pick | None]] = [
                ("random past answer", None),
                ("before (first similar question)", legacy_pick),
                ("product without multilingual", minilm_pick),
                ("product (offline_draft)", product_pick),
            ]
            print(
                f"\n{'share reusing the right answer':<34}{'en':>7}{'ru':>7}{'all':>7}"
                f"{'n':>5}   reused for unanswerable"
            )
            for label, questions in (("dev (tuned on)", dev), ("held-out", held_out)):
                if not questions:
                    continue
                print(f"{label}")
                for name, pick in strategies:
                    scores = await measure(questions, pick)
                    cells = "".join(f"{scores.get(k, 0.0):>7.2f}" for k in ("en", "ru", "all"))
                    answerable = sum(topic != "-" for topic, _, _ in questions)
                    print(f"  {name:<32}{cells}{answerable:>5}   {scores.get('false', 0.0):.2f}")
        finally:
            await close_db()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7, help="lead names and history order")
    parser.add_argument("--dev", action="store_true", help="only the dev set (when tuning)")
    parser.add_argument("--misses", action="store_true", help="print the product's misses")
    args = parser.parse_args(argv)
    asyncio.run(run(args.seed, args.dev, args.misses))


if __name__ == "__main__":
    main()
