"""Offline intent classifier for lead replies to B2B outreach, in English and Russian.

Character n-grams carry typos, inflection and emoji; word n-grams carry phrases; optional
sentence embeddings carry meaning. A multinomial logistic regression over them is small enough
to retrain per workspace whenever operators correct an intent.
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # scikit-learn and SciPy cost a second and ~100 MB: imported when a classifier is trained.
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

INTENTS: tuple[str, ...] = (
    "interested",
    "meeting_request",
    "question",
    "not_now",
    "not_interested",
    "unsubscribe",
    "out_of_office",
    "wrong_person",
)
LANGUAGES: tuple[str, ...] = ("en", "ru")
# The label of shipped examples that carry no intent ("hello there", "ok", "👍"): the model
# learns them as a class of its own, so their probability mass goes to no intent and the best
# intent's confidence stays low. It is never returned as an intent.
NO_INTENT = "none"
LABELS: tuple[str, ...] = (*INTENTS, NO_INTENT)
# The confidence the operator bot shows an intent at and the pipeline rules act at (0.6 in
# bot.senders.notifications and crm.services.ai.intents); below it a reply has no intent.
SURE = 0.6

Embed = Callable[[Sequence[str]], np.ndarray]

# An operator's correction is one line against some 1,700 shipped examples; this weight lets it
# outvote the shipped examples it resembles, so the corrected phrase comes back as corrected.
CORRECTION_WEIGHT = 12.0
# Weak regularisation: the examples are clean and hand-labelled, and a sharper fit gives
# confidences that separate clear replies from ambiguous ones.
_C = 20.0
# Temperature of the probabilities: the weakly regularised fit is overconfident on replies unlike
# its examples. Fitted by bench.eval_intents --calibrate (least log loss on held-out splits of the
# shipped examples, two seeds), then checked on the real-style replies it never saw.
TEMPERATURE = 0.6
# Replies with quoted history or a pasted document: the intent is in the first lines.
_MAX_CHARS = 2000
# Opt-out keywords that carriers and mail providers treat as binding on their own.
_OPT_OUT_WORDS = frozenset(
    {"stop", "unsubscribe", "unsub", "opt out", "optout", "стоп", "отписаться", "отписка"}
)
_NON_WORD = re.compile(r"[\W_]+")
# Where the lead's own text ends and the quoted message it answers begins.
_QUOTE_START = re.compile(
    r"^\s*(?:-{2,}\s*(?:original message|исходное сообщение|forwarded message)"
    r"|on .{3,200}\bwrote:\s*$|.{3,200}\bнаписал[аи]?:\s*$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Example:
    """A labelled reply."""

    text: str
    intent: str
    language: str


@dataclass(frozen=True)
class IntentPrediction:
    """The chosen intent, its probability, and the probability of every intent.

    The scores sum to one less the probability that the reply carries no intent at all.
    """

    intent: str
    confidence: float
    scores: dict[str, float]


def normalize(text: str) -> str:
    """NFKC, lowercase, ё→е, whitespace collapsed: the form that features and lookups see."""
    folded = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    return " ".join(folded.split())


def strip_quoted(text: str) -> str:
    """The lead's own words: drop quoted lines (">") and everything from a reply header on."""
    kept: list[str] = []
    for line in text.splitlines():
        if _QUOTE_START.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    own = "\n".join(kept).strip()
    # A reply that is all quote (a forward with no comment) is still better judged on the quote.
    return own if own else text


def prepare(text: str) -> str:
    """The text the model sees: the lead's own words, capped in length, normalized."""
    return normalize(strip_quoted(text)[:_MAX_CHARS])


def _lookup_key(text: str) -> str:
    # Punctuation, emoji and spacing don't change what an operator meant a phrase to be.
    return _NON_WORD.sub(" ", prepare(text)).strip()


@cache
def _load(language: str) -> tuple[Example, ...]:
    path = resources.files("agents").joinpath("data", f"intents_{language}.jsonl")
    examples: list[Example] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        intent = str(row["intent"])
        if intent not in LABELS:
            raise ValueError(f"intents_{language}.jsonl:{number}: unknown intent {intent!r}")
        examples.append(Example(str(row["text"]), intent, language))
    return tuple(examples)


def shipped_examples(language: str | None = None) -> list[Example]:
    """The labelled examples that ship with the package, for one language or all."""
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; one of {', '.join(LANGUAGES)}")
    languages = LANGUAGES if language is None else (language,)
    return [example for lang in languages for example in _load(lang)]


def _rule(text: str) -> str | None:
    if _lookup_key(text) in _OPT_OUT_WORDS:
        return "unsubscribe"
    return None


def _one_hot(intent: str) -> IntentPrediction:
    return IntentPrediction(intent, 1.0, {label: float(label == intent) for label in INTENTS})


def _features(
    chars: TfidfVectorizer, words: TfidfVectorizer, embed: Embed | None, prepared: Sequence[str]
) -> sp.csr_matrix:
    import scipy.sparse as sp

    blocks = [chars.transform(prepared), words.transform(prepared)]
    if embed is not None:
        dense = np.asarray(embed(list(prepared)), dtype=np.float64)
        if dense.shape[0] != len(prepared):
            raise ValueError("embed returned a different number of rows than texts")
        # Each TF-IDF block has unit norm; a unit-norm embedding weighs in as a third peer.
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        blocks.append(sp.csr_matrix(dense / np.where(norms == 0, 1.0, norms)))
    return sp.hstack(blocks, format="csr")


class IntentClassifier:
    """TF-IDF character and word n-grams (plus optional embeddings) into logistic regression."""

    def __init__(
        self,
        chars: TfidfVectorizer,
        words: TfidfVectorizer,
        model: LogisticRegression,
        *,
        embed: Embed | None,
        corrected: dict[str, str],
        temperature: float = TEMPERATURE,
    ) -> None:
        self._chars = chars
        self._words = words
        self._model = model
        self._embed = embed
        self._corrected = corrected
        self.temperature = temperature
        # Which label each probability column is: a split may lack some intents.
        self._columns = [str(label) for label in model.classes_]

    @classmethod
    def train(
        cls,
        examples: Sequence[Example],
        *,
        corrections: Sequence[Example] = (),
        embed: Embed | None = None,
        temperature: float = TEMPERATURE,
    ) -> IntentClassifier:
        """Fit on examples, with operators' corrections weighted up and overriding equal texts."""
        for example in examples:
            if example.intent not in LABELS:
                raise ValueError(f"unknown intent {example.intent!r}")
        for example in corrections:
            if example.intent not in INTENTS:
                raise ValueError(f"unknown intent {example.intent!r}")
        # The latest correction of a phrase wins, and a shipped example that says otherwise
        # is dropped rather than left to argue with it.
        corrected: dict[str, str] = {}
        for fix in corrections:
            corrected[_lookup_key(fix.text)] = fix.intent
        kept = [e for e in examples if _lookup_key(e.text) not in corrected]
        texts = [prepare(e.text) for e in kept] + [prepare(f.text) for f in corrections]
        labels = [e.intent for e in kept] + [f.intent for f in corrections]
        weights = np.array([1.0] * len(kept) + [CORRECTION_WEIGHT] * len(corrections))
        if len(set(labels)) < 2:
            raise ValueError("training needs examples of at least two intents")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), lowercase=True, sublinear_tf=True
        )
        # \w+ rather than the default two-letter minimum: "да", "ок", "no" and "не" decide intents.
        words = TfidfVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            lowercase=True,
            sublinear_tf=True,
            token_pattern=r"(?u)\b\w+\b",
        )
        chars.fit(texts)
        words.fit(texts)
        model = LogisticRegression(C=_C, solver="newton-cg", max_iter=2000)
        model.fit(_features(chars, words, embed, texts), labels, sample_weight=weights)
        return cls(chars, words, model, embed=embed, corrected=corrected, temperature=temperature)

    def probabilities(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The labels of the columns and each text's tempered probability of every label."""
        prepared = [prepare(text) for text in texts]
        features = _features(self._chars, self._words, self._embed, prepared)
        logits = np.asarray(self._model.decision_function(features), dtype=np.float64)
        if logits.ndim == 1:  # two classes: one logit for the second
            logits = np.column_stack([np.zeros_like(logits), logits])
        logits = logits / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return self._columns, exp / exp.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> list[IntentPrediction]:
        """The most probable intent of each text, with its probability and all the scores."""
        if not texts:
            return []
        columns, probabilities = self.probabilities(texts)
        predictions: list[IntentPrediction] = []
        for text, row in zip(texts, probabilities, strict=True):
            fixed = self._corrected.get(_lookup_key(text))
            rule = _rule(text)
            if fixed is not None:
                # An operator labelled this exact phrase: that is the answer, not a guess.
                predictions.append(_one_hot(fixed))
            elif rule is not None:
                predictions.append(_one_hot(rule))
            else:
                scores = dict.fromkeys(INTENTS, 0.0)
                for label, probability in zip(columns, row, strict=True):
                    if label != NO_INTENT:
                        scores[label] = float(probability)
                best = max(INTENTS, key=scores.__getitem__)
                predictions.append(IntentPrediction(best, scores[best], scores))
        return predictions


def split_examples(
    examples: Iterable[Example], *, holdout: float = 0.25, seed: int = 7
) -> tuple[list[Example], list[Example]]:
    """Deterministic train/held-out split, stratified by (language, intent).

    Examples whose normalized texts are equal are kept on the same side, so no held-out text is
    also a training text.
    """
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be in [0, 1)")
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        groups[normalize(example.text)].append(example)
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, members in groups.items():
        strata[(members[0].language, members[0].intent)].append(key)
    train: list[Example] = []
    held: list[Example] = []
    for (language, intent), keys in sorted(strata.items()):
        # Sorted, then shuffled by a seed of its own: the split depends neither on input order
        # nor on which other strata exist.
        keys.sort()
        random.Random(f"{seed}:{language}:{intent}").shuffle(keys)
        count = round(len(keys) * holdout)
        if holdout > 0 and len(keys) > 1:
            count = min(max(count, 1), len(keys) - 1)
        for index, key in enumerate(keys):
            (held if index < count else train).extend(groups[key])
    return train, held


def fit_temperature(classifier: IntentClassifier, examples: Sequence[Example]) -> float:
    """The temperature with the least log loss of the true labels of held-out examples."""
    columns, raw = classifier.probabilities([e.text for e in examples])
    # Back to logits (up to a constant per row) at temperature 1.
    logits = np.log(np.clip(raw, 1e-300, None)) * classifier.temperature
    truth = np.array([columns.index(e.intent) for e in examples])
    best, best_loss = 1.0, float("inf")
    for temperature in np.arange(0.5, 4.01, 0.05):
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(truth)), truth].mean())
        if loss < best_loss:
            best, best_loss = float(round(temperature, 2)), loss
    return best


def evaluate(classifier: IntentClassifier, examples: Sequence[Example]) -> dict[str, float]:
    """Accuracy per language present in examples, and over all of them as "all".

    A reply labelled with no intent is right when no intent reaches ``SURE``.
    """
    if not examples:
        return {}
    predictions = classifier.predict([e.text for e in examples])
    hits: dict[str, list[bool]] = defaultdict(list)
    for example, prediction in zip(examples, predictions, strict=True):
        if example.intent == NO_INTENT:
            correct = prediction.confidence < SURE
        else:
            correct = prediction.intent == example.intent
        hits[example.language].append(correct)
        hits["all"].append(correct)
    return {language: sum(values) / len(values) for language, values in sorted(hits.items())}
