"""Map workers' structured records: parsing a reply robustly (JSON, fenced, Python-literal or
plain text salvaged with a warning) and rendering records for the collapse and reduce prompts."""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ctxroute.pipelines import prompts
from ctxroute.pipelines.citations import parse_markers
from ctxroute.pipelines.packing import SentenceMap

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_SID = re.compile(r"[Ss](\d+)")


@dataclass(frozen=True)
class Fact:
    text: str
    sentence_ids: tuple[str, ...]


@dataclass(frozen=True)
class MapRecord:
    """One worker's structured notes. ``warning`` is set when the reply had to be salvaged."""

    group: int
    facts: tuple[Fact, ...] = ()
    rationale: str = ""
    answer: str = ""
    confidence: float = 0.0
    no_information: bool = False
    warning: str = ""

    @property
    def sentence_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for f in self.facts for s in f.sentence_ids))


def _balanced_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (string-aware), or None."""
    start = text.find("{")
    while start >= 0:
        depth, in_str, quote, esc = 0, False, "", False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == quote:
                    in_str = False
            elif ch in "\"'":
                in_str, quote = True, ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def _loads(blob: str) -> Any:
    for attempt in (
        lambda b: json.loads(b),
        lambda b: ast.literal_eval(b),
        lambda b: json.loads(re.sub(r",\s*([}\]])", r"\1", b.replace("'", '"'))),
        lambda b: ast.literal_eval(re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", b)))),
    ):
        try:
            return attempt(blob)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            continue
    return None


def _ids(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        raw = " ".join(str(v) for v in value)
    else:
        raw = str(value or "")
    return tuple(dict.fromkeys(f"S{m.group(1)}" for m in _SID.finditer(raw)))


def _confidence(value: Any) -> float:
    if isinstance(value, bool):
        return 5.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(min(5.0, max(0.0, value)))
    m = re.search(r"\d+(?:\.\d+)?", str(value or ""))
    return float(min(5.0, max(0.0, float(m.group())))) if m else 0.0


def _record_from_obj(obj: dict, group: int) -> MapRecord:
    facts: list[Fact] = []
    raw_facts = obj.get("facts") or obj.get("evidence") or []
    if isinstance(raw_facts, (str, dict)):
        raw_facts = [raw_facts]
    for f in raw_facts if isinstance(raw_facts, list) else []:
        if isinstance(f, dict):
            text = str(f.get("text") or f.get("fact") or "").strip()
            ids = _ids(f.get("sentences") or f.get("sentence_ids") or f.get("ids") or f.get("source") or "")
            if not ids:
                ids = tuple(sid for m in parse_markers(text) for sid in m.ids)
        else:
            text = str(f).strip()
            ids = tuple(sid for m in parse_markers(text) for sid in m.ids) or _ids(text)
        if text or ids:
            facts.append(Fact(text=text, sentence_ids=ids))
    answer = str(obj.get("answer") or obj.get("partial_answer") or "").strip()
    no_info = any(prompts.NO_INFORMATION in str(v) for v in (answer, obj.get("status", "")))
    return MapRecord(
        group=group,
        facts=tuple(facts),
        rationale=str(obj.get("rationale") or "").strip(),
        answer=answer,
        confidence=_confidence(obj.get("confidence")),
        no_information=no_info and not facts,
    )


def parse_record(text: str, group: int) -> MapRecord:
    """Parse a worker's reply robustly; never raises.

    Tolerates code fences, text around the object, single quotes, trailing commas, missing
    fields and plain text. Unparsable replies become a record with confidence 0 and a warning.
    """
    raw = text or ""
    fenced = _FENCE.search(raw)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(raw)
    for cand in candidates:
        blob = _balanced_object(cand)
        if blob is None:
            continue
        obj = _loads(blob)
        if isinstance(obj, dict):
            return _record_from_obj(obj, group)
    stripped = raw.strip()
    if not stripped or re.match(r"^\W*NO_INFORMATION\b", stripped) or stripped.upper().startswith("NO INFORMATION"):
        return MapRecord(group=group, no_information=True)
    ids = tuple(sid for m in parse_markers(stripped) for sid in m.ids)
    return MapRecord(
        group=group,
        facts=(Fact(text=stripped[:500], sentence_ids=ids),) if ids else (),
        answer=stripped[:500],
        confidence=0.0,
        warning=f"map group {group}: reply was not a JSON record; kept as plain text with confidence 0",
    )


def render_records(records: Sequence[MapRecord], sentence_map: SentenceMap, *, quote_chars: int = 300) -> str:
    """Records as text for the collapse/reduce prompt: facts with ids and the cited sentences."""
    lines: list[str] = []
    for n, r in enumerate(sorted(records, key=lambda r: -r.confidence), 1):
        lines.append(f"Note {n} (part {r.group + 1}, confidence {r.confidence:g}/5):")
        for f in r.facts:
            ids = ", ".join(s for s in f.sentence_ids if s in sentence_map)
            lines.append(f"- {f.text}" + (f" [{ids}]" if ids else ""))
        if r.answer:
            lines.append(f"  Partial answer: {r.answer}")
        if r.rationale:
            lines.append(f"  Rationale: {r.rationale}")
    cited = dict.fromkeys(s for r in records for s in r.sentence_ids if s in sentence_map)
    if cited:
        lines.append("Cited sentences:")
        for sid in cited:
            quote = " ".join(sentence_map.text(sid).split())
            lines.append(f"[{sid}] {quote[:quote_chars]}")
    return "\n".join(lines)


def _record_json(r: MapRecord) -> str:
    return json.dumps(
        {
            "facts": [{"text": f.text, "sentences": list(f.sentence_ids)} for f in r.facts],
            "rationale": r.rationale,
            "answer": r.answer,
            "confidence": r.confidence,
        }
    )
