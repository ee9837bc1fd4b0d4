"""Optional LLM judge: asks a model whether an answer matches the gold answer.

The prompt asks for ``True`` or ``False`` on the first line and a short rationale after it.
Verdicts are cached by a hash of (question, gold, answer) in a dict (or any mutable
mapping the caller passes), so reruns and repeated answers cost nothing.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import MutableMapping, Sequence

from ctxroute.errors import LLMMalformedResponse
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest

JUDGE_SYSTEM = (
    "You grade answers to questions about long documents. Compare the candidate answer with the "
    "gold answer. The candidate is correct when it states the gold answer's key facts without "
    "contradicting it; extra detail is fine. When the gold answer says the document does not "
    "contain the answer, the candidate is correct only if it also declines to answer.\n"
    "Reply with True or False on the first line, then one short sentence of rationale."
)
JUDGE_USER = "Question: {question}\n\nGold answer: {gold}\n\nCandidate answer: {answer}\n\nIs the candidate correct? True or False:"

_VERDICT = re.compile(r"\b(true|false|correct|incorrect|yes|no)\b", re.IGNORECASE)
_POSITIVE = {"true", "correct", "yes"}


@dataclass(frozen=True)
class Verdict:
    correct: bool
    rationale: str
    cached: bool = False


def parse_verdict(text: str) -> Verdict:
    """First True/False (or correct/incorrect, yes/no) in the reply; the rest is the rationale.

    "incorrect" is checked before "correct" by the regex's word boundaries. Raises
    ``LLMMalformedResponse`` when the reply holds no verdict.
    """
    t = text.strip()
    m = _VERDICT.search(t[:200])
    if not m:
        raise LLMMalformedResponse(f"judge reply has no True/False verdict: {t[:120]!r}; use a model that follows the format")
    rationale = (t[: m.start()] + t[m.end() :]).strip(" \n:.-*")
    return Verdict(m.group(1).lower() in _POSITIVE, rationale[:300])


def judge_key(question: str, golds: Sequence[str], answer: str) -> str:
    h = hashlib.sha256()
    for part in (question, "\x1f".join(golds), answer):
        h.update(part.encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


class LLMJudge:
    """Judges answers with ``llm``; ``cache`` maps judge_key -> Verdict (a dict by default)."""

    def __init__(self, llm: LLMClient, cache: MutableMapping[str, Verdict] | None = None, max_tokens: int = 64) -> None:
        self.llm = llm
        self.cache: MutableMapping[str, Verdict] = {} if cache is None else cache
        self.max_tokens = max_tokens

    async def judge(self, question: str, golds: Sequence[str], answer: str) -> Verdict:
        key = judge_key(question, golds, answer)
        hit = self.cache.get(key)
        if hit is not None:
            return Verdict(hit.correct, hit.rationale, cached=True)
        gold = " | ".join(golds) if golds else "(none given)"
        req = LLMRequest.of(JUDGE_SYSTEM, JUDGE_USER.format(question=question, gold=gold, answer=answer), max_tokens=self.max_tokens, stage="eval.judge")
        resp = await self.llm.complete(req)
        v = parse_verdict(resp.text)
        self.cache[key] = v
        return v


__all__ = ["JUDGE_SYSTEM", "LLMJudge", "Verdict", "judge_key", "parse_verdict"]
