"""The project's own demo corpus: long synthetic annual reports with planted, gold-labelled facts.

Each report is markdown (sections, tables, lists) about a fictional company: a few fact
sections (divisions, segment table, facilities, board, five-year review) spread among filler
sections of varied template sentences, so retrieval is not trivial but every planted fact is
findable. Gold evidence spans are recorded while the text is assembled, never searched for.

Deterministic for a seed; layer 0 (standard library only). The markdown assembly that records
the spans (``_Section``, ``_render``) lives in ``ctxroute.synthetic_text``; the word lists in
``ctxroute.synthetic_vocab``.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ctxroute.synthetic_text import Piece, _money, _render, _Section, _words
from ctxroute.synthetic_vocab import (
    _COMPANIES, _UNITS, _FIRST, _LAST, _CITIES, _FACILITY_KINDS, _PROJECTS,
    _PRODUCTS, _TOPICS, _FILLER_TITLES, _MONTHS, _ROLES, _OPENERS, _FILLER_TEMPLATES,
)

TASKS = ("lookup", "comparison", "aggregation", "count", "unanswerable")


@dataclass(frozen=True)
class GoldQA:
    """A question with its gold answer and the character spans that support it.

    ``task`` is one of ``TASKS``; unanswerable questions have no evidence and a refusal as answer.
    ``aliases`` are other accepted spellings of the answer.
    """

    question: str
    answer: str
    doc_index: int
    evidence: tuple[tuple[int, int], ...]
    task: str
    aliases: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return self.task != "unanswerable"


@dataclass(frozen=True)
class SyntheticDoc:
    title: str
    text: str
    qa: tuple[GoldQA, ...]


def generate_report(seed: int, n_words: int = 20000, *, company: str | None = None) -> SyntheticDoc:
    """One long annual report with planted facts and 21 gold questions (all five tasks).

    ``n_words`` is a lower bound (the fact sections alone take about 1,000 words); the
    result overshoots it by at most one filler section.
    """
    rng = random.Random(seed)
    company = company or rng.choice(_COMPANIES)
    year = rng.randint(2029, 2036)
    prev = year - 1
    units = rng.sample(_UNITS, 9)  # eight divisions: more than a top-5 retrieval can cover
    unused_unit, units = units[-1], units[:-1]
    people = [f"{f} {l}" for f, l in zip(rng.sample(_FIRST, 24), rng.sample(_LAST, 24))]
    board_people, unit_heads, filler_people = people[:8], people[8:16], people[16:]
    cities = rng.sample(_CITIES, len(_CITIES))
    facility_cities, unit_cities, filler_cities = cities[:7], cities[7:15], cities[15:23]
    missing_city = cities[23][0]  # never mentioned: for an unanswerable question
    n_board = rng.randint(5, 8)
    n_facilities = rng.randint(4, 7)

    # --- planted facts -------------------------------------------------------------
    rev_prev = {u: round(rng.uniform(80, 900), 1) for u in units}
    growth = {u: rng.choice([-1, 1, 1]) * rng.uniform(0.02, 0.25) for u in units}
    rev = {u: round(rev_prev[u] * (1 + growth[u]), 1) for u in units}
    margin = {u: round(rng.uniform(3.0, 24.0), 1) for u in units}
    margin_prev = {u: round(max(0.5, margin[u] + rng.uniform(-4.0, 4.0)), 1) for u in units}
    headcount = {u: rng.randint(300, 6000) for u in units}
    capex = {u: round(rng.uniform(5, 90), 1) for u in units}
    patents = {u: rng.randint(2, 60) for u in units}
    # keep comparisons unambiguous
    if len(set(margin.values())) < len(units) or len(set(headcount.values())) < len(units):
        return generate_report(seed + 7919, n_words, company=company)

    fact_sections: list[_Section] = []
    for i, u in enumerate(units):
        head = unit_heads[i]
        city, country = unit_cities[i]
        product = rng.choice(_PRODUCTS)
        blocks: list[tuple[str, list[Piece]]] = [
            ("para", [
                (f"The {u} division designs and sells {product} and is run from {city}, {country}.", None),
                (rng.choice([
                    f"The {u} division is led by {head}.",
                    f"{head} heads the {u} division.",
                    f"Since {rng.randint(2015, prev)}, the {u} division has been run by {head}.",
                ]), f"head:{u}"),
                (rng.choice([
                    f"Revenue of the {u} division reached {_money(rev[u])} million euros in {year}, "
                    f"compared with {_money(rev_prev[u])} million euros in {prev}.",
                    f"The {u} division's sales came to {_money(rev[u])} million euros in {year}, "
                    f"against {_money(rev_prev[u])} million euros in {prev}.",
                    f"In {year}, the {u} division generated revenue of {_money(rev[u])} million euros, "
                    f"{'up' if rev[u] > rev_prev[u] else 'down'} from {_money(rev_prev[u])} million euros in {prev}.",
                ]), f"rev:{u}"),
            ]),
            ("para", [
                (rng.choice([
                    f"The {u} division reported an operating margin of {margin[u]}% for {year}.",
                    f"In {year}, the {u} division earned an operating margin of {margin[u]}%.",
                    f"Operating profit at the {u} division was {margin[u]}% of its revenue in {year}.",
                ]), f"margin:{u}"),
                (rng.choice([
                    f"At the end of {year}, the {u} division employed {headcount[u]:,} people.",
                    f"The {u} division had a workforce of {headcount[u]:,} at the close of {year}.",
                    f"{headcount[u]:,} people worked in the {u} division at the end of {year}.",
                ]), f"head_count:{u}"),
                (rng.choice([
                    f"{head} said the team had spent much of the year on {rng.choice(_TOPICS)}.",
                    f"Most of its customers are in {rng.choice(cities)[1]} and {rng.choice(cities)[1]}.",
                    f"The division expects {rng.choice(_PROJECTS)} to shape its plans for {year + 1}.",
                ]), None),
            ]),
        ]
        fact_sections.append(_Section(f"The {u} Division", blocks))

    table_rows: list[Piece] = [
        (f"| Division | Capital expenditure {year} (EUR million) | Patents filed {year} |", None),
        ("|---|---:|---:|", None),
    ]
    table_rows += [(f"| {u} | {_money(capex[u])} | {patents[u]} |", f"capex:{u}") for u in units]
    fact_sections.append(_Section("Investment by Division", [
        ("para", [(f"The table below shows capital expenditure and patent filings by division for {year}.", None)]),
        ("lines", table_rows),
    ]))

    fac_pieces: list[Piece] = []
    facilities = []
    for j in range(n_facilities):
        city, country = facility_cities[j]
        kind = rng.choice(_FACILITY_KINDS)
        opened = rng.randint(1985, year - 1)
        facilities.append((city, country, kind, opened))
        fac_pieces.append((f"- {city}, {country}: {kind}, opened in {opened}", f"fac:{j}"))
    fact_sections.append(_Section("Facilities", [
        ("para", [(f"{company} operates the following facilities.", None)]),
        ("lines", fac_pieces),
    ]))

    roles = list(_ROLES[:n_board])
    board_pieces = [(f"- {board_people[k]}, {roles[k]}", f"board:{k}") for k in range(n_board)]
    fact_sections.append(_Section("Board of Directors", [
        ("para", [(f"At the end of {year} the board of {company} had the following members.", None)]),
        ("lines", board_pieces),
    ]))

    review = [(f"In {prev}, the {u} division's operating margin stood at {margin_prev[u]}%.", f"margin_prev:{u}") for u in units]
    rng.shuffle(review)
    fact_sections.append(_Section("Five-Year Review", [
        ("para", [(f"This section looks back at results before {year}.", None), *review]),
    ]))

    # --- filler --------------------------------------------------------------------
    def filler_sentence(template: str | None = None) -> str:
        template = template or rng.choice(_FILLER_TEMPLATES)
        if not template.startswith("{") and rng.random() < 0.3:
            template = rng.choice(_OPENERS) + template[0].lower() + template[1:]
        city, country = rng.choice(filler_cities)
        return template.format(
            month=rng.choice(_MONTHS), city=city, country=country, project=rng.choice(_PROJECTS),
            topic=rng.choice(_TOPICS), person=rng.choice(filler_people), product=rng.choice(_PRODUCTS),
            n=rng.randint(2, 40), pct=rng.randint(3, 45), unit=rng.choice(units),
        )

    def _paragraph(n: int) -> list[str]:
        return [filler_sentence(t) for t in rng.sample(_FILLER_TEMPLATES, n)]  # no template twice

    def filler_section(title: str, target_words: int) -> _Section:
        blocks: list[tuple[str, list[Piece]]] = []
        words = 0
        while words < target_words:
            if blocks and rng.random() < 0.15:
                blocks.append(("h3", [(f"{rng.choice(_MONTHS)} update", None)]))
            room = max(2, (target_words - words) // 12 + 1)  # about 12 words a sentence
            if rng.random() < 0.08:
                q = [("| Quarter | Orders | Shipments |", None), ("|---|---:|---:|", None)]
                q += [(f"| Q{n} | {rng.randint(100, 999)} | {rng.randint(100, 999)} |", None) for n in range(1, 5)]
                block: tuple[str, list[Piece]] = ("lines", q)
            elif rng.random() < 0.1:
                block = ("lines", [(f"- {filler_sentence()}", None) for _ in range(min(room, rng.randint(2, 5)))])
            else:
                block = ("para", [(x, None) for x in _paragraph(min(room, rng.randint(3, 8)))])
            blocks.append(block)
            words += _words([_Section("", [block])])
        return _Section(title, blocks)

    intro = _Section("Letter from the Chair", [
        ("para", [(f"This report describes the year {year} at {company}.", None),
                  (f"The group's divisions are {', '.join(units[:-1])} and {units[-1]}.", "units"),
                  *[(filler_sentence(), None) for _ in range(4)]]),
    ])
    filler: list[_Section] = []
    titles = list(_FILLER_TITLES)
    rng.shuffle(titles)
    budget = n_words - _words([intro, *fact_sections])
    n_min = len(fact_sections) - 1  # at least one filler section between fact sections
    small = budget < n_min * 250
    while budget > 0 or len(filler) < n_min:
        k = len(filler)
        title = titles[k % len(titles)] + ("" if k < len(titles) else f" ({k // len(titles) + 1})")
        sec = filler_section(title, max(20, budget // n_min) if small else rng.randint(250, 700))
        filler.append(sec)
        budget -= _words([sec])

    # spread the fact sections evenly between filler sections (comparisons span the document)
    rng.shuffle(fact_sections)
    order: list[_Section] = [intro]
    per_gap = len(filler) / len(fact_sections)
    fi = 0
    for k, fs in enumerate(fact_sections):
        take = round((k + 1) * per_gap) - fi if k < len(fact_sections) - 1 else 0
        order.append(fs)
        order.extend(filler[fi : fi + take])
        fi += take
    order.extend(filler[fi:])

    title = f"{company} Annual Report {year}"
    text, spans = _render(title, order)

    # --- questions -----------------------------------------------------------------
    qa: list[GoldQA] = []

    def ask(task: str, question: str, answer: str, keys: Sequence[str], aliases: Sequence[str] = ()) -> None:
        qa.append(GoldQA(question, answer, 0, tuple(spans[k] for k in keys), task, tuple(aliases)))

    u1, u2, u3 = rng.sample(units, 3)
    ask("lookup", f"What was the operating margin of the {u1} division in {year}?", f"{margin[u1]}%",
        [f"margin:{u1}"], [f"{margin[u1]} percent"])
    ask("lookup", f"What operating margin did the {u2} division have in {prev}?", f"{margin_prev[u2]}%",
        [f"margin_prev:{u2}"], [f"{margin_prev[u2]} percent"])
    ask("lookup", f"Who leads the {u3} division?", unit_heads[units.index(u3)], [f"head:{u3}"])
    ask("lookup", f"How many people did the {u1} division employ at the end of {year}?",
        f"{headcount[u1]:,}", [f"head_count:{u1}"], [str(headcount[u1])])
    ask("lookup", f"How much did the {u2} division spend on capital expenditure in {year}?",
        f"{_money(capex[u2])} million euros", [f"capex:{u2}"], [_money(capex[u2]), f"EUR {_money(capex[u2])} million"])
    ask("lookup", f"What was the revenue of the {u3} division in {year}?", f"{_money(rev[u3])} million euros",
        [f"rev:{u3}"], [_money(rev[u3])])
    j = rng.randrange(n_facilities)
    ask("lookup", f"When did {company} open its facility in {facilities[j][0]}?", str(facilities[j][3]), [f"fac:{j}"])

    a, b = rng.sample(units, 2)
    better = a if margin[a] > margin[b] else b
    ask("comparison", f"Which division had the higher operating margin in {year}: {a} or {b}?", better,
        [f"margin:{a}", f"margin:{b}"])
    a, b = rng.sample(units, 2)
    bigger = a if headcount[a] > headcount[b] else b
    ask("comparison", f"Which division employed more people at the end of {year}, {a} or {b}?", bigger,
        [f"head_count:{a}", f"head_count:{b}"])
    a = rng.choice(units)
    change = "improved" if margin[a] > margin_prev[a] else ("declined" if margin[a] < margin_prev[a] else "stayed the same")
    ask("comparison", f"Did the {a} division's operating margin improve or decline from {prev} to {year}?", change,
        [f"margin_prev:{a}", f"margin:{a}"])

    grew = [u for u in units if rev[u] > rev_prev[u]]
    ask("aggregation", f"Which divisions grew their revenue in {year} compared with {prev}?",
        ", ".join(grew) if grew else "None of them", [f"rev:{u}" for u in units])
    total = round(sum(rev.values()), 1)
    ask("aggregation", f"What was the combined revenue of all divisions in {year}?", f"{_money(total)} million euros",
        [f"rev:{u}" for u in units], [_money(total)])
    top = max(units, key=lambda u: margin[u])
    ask("aggregation", f"Which division had the highest operating margin in {year}?", top, [f"margin:{u}" for u in units])

    threshold = rng.choice([8, 10, 12, 15])
    above = [u for u in units if margin[u] > threshold]
    ask("count", f"How many divisions reported an operating margin above {threshold}% in {year}?", str(len(above)),
        [f"margin:{u}" for u in units])
    ask("count", f"How many facilities does {company} operate?", str(n_facilities), [f"fac:{k}" for k in range(n_facilities)])
    ask("count", f"How many members did the board of {company} have at the end of {year}?", str(n_board),
        [f"board:{k}" for k in range(n_board)])
    ask("count", f"How many divisions is {company} organised in?", str(len(units)), ["units"])

    refusal = "The document does not say."
    ask("unanswerable", f"What was the operating margin of the {unused_unit} division in {year}?", refusal, [])
    ask("unanswerable", f"What was the revenue of the {u1} division in {year - 3}?", refusal, [])
    ask("unanswerable", f"Who is the Chief Data Officer of {company}?", refusal, [])
    ask("unanswerable", f"When did {company} open its facility in {missing_city}?", refusal, [])
    return SyntheticDoc(title=title, text=text, qa=tuple(qa))


def generate_corpus(seed: int = 7, n_docs: int = 3, n_words: int = 20000) -> list[SyntheticDoc]:
    """``n_docs`` reports about different companies; ``GoldQA.doc_index`` is the list index."""
    rng = random.Random(seed)
    companies = rng.sample(_COMPANIES, min(n_docs, len(_COMPANIES)))
    docs = []
    for i in range(n_docs):
        doc = generate_report(rng.randrange(2**31), n_words, company=companies[i % len(companies)])
        docs.append(dataclasses.replace(doc, qa=tuple(dataclasses.replace(q, doc_index=i) for q in doc.qa)))
    return docs


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def write_corpus(out_dir: Path, docs: Sequence[SyntheticDoc]) -> list[Path]:
    """Write each report as ``<slug>.md`` and all questions to ``qa.jsonl`` (generic eval format).

    qa.jsonl lines: ``{id, question, answers, doc, evidence, task, answerable}`` where ``doc``
    is the markdown file name and ``evidence`` the gold ``[start, end]`` spans in its text.
    Returns the written paths, markdown files first.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    names: list[str] = []
    for doc in docs:
        name = f"{_slug(doc.title)}.md"
        if name in names:
            name = f"{_slug(doc.title)}-{len(names)}.md"
        names.append(name)
        path = out_dir / name
        # newline="" keeps the text byte-for-byte, so the spans stay valid on every platform
        with path.open("w", encoding="utf-8", newline="") as fh:
            fh.write(doc.text)
        paths.append(path)
    qa_path = out_dir / "qa.jsonl"
    with qa_path.open("w", encoding="utf-8", newline="\n") as fh:
        for i, doc in enumerate(docs):
            for j, q in enumerate(doc.qa):
                record = {
                    "id": f"{Path(names[i]).stem}-q{j}",
                    "question": q.question,
                    "answers": [q.answer, *q.aliases],
                    "doc": names[i],
                    "evidence": [list(span) for span in q.evidence],
                    "task": q.task,
                    "answerable": q.answerable,
                }
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths.append(qa_path)
    return paths
