"""Map-reduce over the whole collection (and the sequential chain-of-agents variant).

The collection's passages, in document order, are split into groups that fit the model's
usable window. Each map worker returns a structured record (facts with sentence ids,
rationale, partial answer, confidence 0-5, or ``NO_INFORMATION``). When the records do not
fit one reduce prompt they are collapsed in groups first. The reduce call sees every
record with its sentence ids and the cited sentences' text, resolves conflicts by
confidence and cites the ids, so citations survive into the final answer.

``mode="chain"`` (Chain-of-Agents) runs the workers one after another: each reads its
chunk plus the previous worker's notes; the reduce call then sees every worker's notes.
"""
from __future__ import annotations

import asyncio
import bisect
import time
from dataclasses import dataclass, replace
from typing import Callable, Literal, Sequence

from ctxroute.errors import ContextWindowExceeded, InputError
from ctxroute.pipelines import prompts
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.pipelines.map_records import Fact, MapRecord, parse_record, render_records
from ctxroute.pipelines.packing import PackedContext, SentenceMap, pack_evidence
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult, answer_room, call_llm, check_window
from ctxroute.router.estimates import GROUP_SLACK_TOKENS, greedy_groups, map_group_tokens, packed_tokens
from ctxroute.types import CallUsage, Chunk, Route

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total); one instance per run

@dataclass(frozen=True)
class MapReduceConfig:
    max_concurrency: int = 4
    mode: Literal["parallel", "chain"] = "parallel"
    map_max_tokens: int = 300
    reduce_max_tokens: int = 300
    group_tokens: int | None = None  # context tokens per map group; default: what fits the usable window
    max_collapse_rounds: int = 3
    max_map_calls: int | None = 64  # more groups than this: ContextWindowExceeded (the engine falls back to hybrid)


def group_passages(corpus: Corpus, count_tokens, group_tokens: int) -> list[list[Chunk]]:  # type: ignore[no-untyped-def]
    """Passages of every document in document order, cut into groups of ~``group_tokens``
    packed tokens (text counted with the model's tokenizer, plus one id per sentence) by
    :func:`ctxroute.router.estimates.greedy_groups`, the function the router's estimate uses. A
    passage counts only its text not already in the previous passage of its document (packing
    sends shared sentences once)."""
    passages: list[Chunk] = []
    sizes: list[int] = []
    for doc_id in corpus.doc_ids():
        doc = corpus.document(doc_id)
        starts = [s.start for s in corpus.sentences(doc_id)]
        end = -1
        for p in corpus.passages(doc_id):
            start = max(p.start, end)
            if start < p.end:
                n_sentences = bisect.bisect_left(starts, p.end) - bisect.bisect_left(starts, start)
                sizes.append(packed_tokens(count_tokens(doc.text[start : p.end]), n_sentences))
            else:
                sizes.append(0)
            passages.append(p)
            end = max(end, p.end)
    groups: list[list[Chunk]] = []
    i = 0
    for k in greedy_groups(sizes, group_tokens):
        groups.append(passages[i : i + k])
        i += k
    return groups


class MapReduce:
    """Map workers over window-sized groups, optional collapse, one reduce call."""

    route = Route.MR

    def __init__(self, llm: LLMClient, config: MapReduceConfig = MapReduceConfig()) -> None:
        if config.max_concurrency < 1:
            raise InputError(f"max_concurrency must be >= 1, got {config.max_concurrency}")
        if config.mode not in ("parallel", "chain"):
            raise InputError(f"mode must be 'parallel' or 'chain', got {config.mode!r}")
        self.llm = llm
        self.config = config

    def _group_tokens(self, question: str) -> int:
        if self.config.group_tokens:
            return self.config.group_tokens
        overhead = self.llm.count_tokens(prompts.CHAIN_SYSTEM + question * 2) + GROUP_SLACK_TOKENS
        notes = self.config.map_max_tokens if self.config.mode == "chain" else 0
        return map_group_tokens(self.llm.profile.usable_window, overhead, self.config.map_max_tokens, notes)

    def _packs(self, question: str, corpus: Corpus, gtok: int) -> list[PackedContext]:
        """Pack window-sized groups. Sentence ids and delimiters make a prompt longer than its
        passages: when a group does not fit, regroup everything with a smaller target (a few
        rounds), and only then halve the groups that still do not fit."""
        for _ in range(3):
            packs: list[PackedContext] = []
            worst = 1.0
            for g in group_passages(corpus, self.llm.count_tokens, gtok):
                pack = self._pack(corpus, g, packs[-1].next_id if packs else 1, budget=int(gtok * 1.5))
                need = self._need(question, pack)
                worst = max(worst, need / self.llm.profile.usable_window, 1.0 + 0.5 * bool(pack.dropped))
                packs.append(pack)
            if worst <= 1.0:
                return packs
            gtok = max(100, int(gtok / worst * 0.97))
        out: list[PackedContext] = []
        pending = [g for g in reversed(group_passages(corpus, self.llm.count_tokens, gtok))]
        while pending:
            g = pending.pop()
            pack = self._pack(corpus, g, out[-1].next_id if out else 1, budget=int(gtok * 1.5))
            if (pack.dropped or self._need(question, pack) > self.llm.profile.usable_window) and len(g) > 1:
                half = len(g) // 2
                pending.extend([g[half:], g[:half]])
                continue
            out.append(pack)
        return out

    def _need(self, question: str, pack: PackedContext) -> int:
        """Tokens a map call over ``pack`` needs (prompt, room for notes in chain mode, answer)."""
        notes = "x " * self.config.map_max_tokens if self.config.mode == "chain" else ""
        request = prompts.map_request(question, pack.text, max_tokens=self.config.map_max_tokens, stage="", notes=notes)
        return self.llm.count_tokens("\n".join(m.content for m in request.messages)) + request.max_tokens

    def _pack(self, corpus: Corpus, group: list[Chunk], id_start: int, budget: int) -> PackedContext:
        doc_ids = list(dict.fromkeys(c.doc_id for c in group))
        return pack_evidence(
            group,
            documents=corpus.documents_for(doc_ids),
            sentences_by_doc=corpus.sentences_for(doc_ids),
            count_tokens=self.llm.count_tokens,
            token_budget=budget,
            doc_order=corpus.doc_ids(),
            id_start=id_start,
        )

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> StrategyResult:
        """``on_progress(stage, done, total)``: ``map`` after each map call (or chain step), then
        ``reduce`` before the reduce call."""
        corpus = Corpus.of(collection)
        t0 = time.perf_counter()
        packs = self._packs(question, corpus, self._group_tokens(question))
        cap = self.config.max_map_calls
        if cap is not None and len(packs) > cap:
            raise ContextWindowExceeded(
                f"map-reduce needs {len(packs)} map calls, more than max_map_calls={cap}; "
                "raise MapReduceConfig.max_map_calls or scope the question to fewer documents",
                prompt_tokens=sum(p.n_tokens for p in packs), window=self.llm.profile.usable_window,
            )
        done = 0

        def tick() -> None:  # one finished map call
            nonlocal done
            done += 1
            if on_progress:
                on_progress("map", done, len(packs))

        if on_progress:
            on_progress("map", 0, len(packs))
        smap = SentenceMap.empty()
        for pack in packs:
            smap = smap.merged(pack.sentence_map)
        retrieve_ms = (time.perf_counter() - t0) * 1000.0

        t1 = time.perf_counter()
        usage: list[CallUsage] = []
        warnings: list[str] = []
        if self.config.mode == "chain":
            records = await self._chain(question, packs, usage, tick)
        else:
            records = await self._parallel(question, packs, usage, tick)
        warnings.extend(r.warning for r in records if r.warning)
        informative = [r for r in records if not r.no_information]
        if not informative:
            return StrategyResult(
                route=Route.MR,
                text=f"{prompts.NOT_FOUND}: no part of the documents has information about the question",
                sentence_map=smap,
                usage=tuple(usage),
                warnings=tuple(warnings),
                abstained=True,
                abstain_reason=f"all {len(records)} map workers answered NO_INFORMATION",
                timings_ms={"retrieve": retrieve_ms, "llm": (time.perf_counter() - t1) * 1000.0},
            )
        informative = await self._collapse(question, informative, smap, usage, warnings)
        notes = render_records(informative, smap)
        request = prompts.reduce_request(question, notes, max_tokens=self.config.reduce_max_tokens, stage="mr.reduce")
        check_window(self.llm, request, stage="mr.reduce")
        if on_progress:
            on_progress("reduce", 0, 1)
        response, u = await call_llm(self.llm, request, on_delta=on_delta)
        usage.append(u)
        return StrategyResult(
            route=Route.MR,
            text=response.text,
            sentence_map=smap,
            usage=tuple(usage),
            warnings=tuple(warnings),
            timings_ms={"retrieve": retrieve_ms, "llm": (time.perf_counter() - t1) * 1000.0},
            prompt_tokens_packed=sum(p.n_tokens for p in packs),
        )

    async def _map_one(self, question: str, pack: PackedContext, i: int, notes: str = "") -> tuple[MapRecord, CallUsage]:
        stage = f"mr.chain[{i}]" if self.config.mode == "chain" else f"mr.map[{i}]"
        request = prompts.map_request(question, pack.text, max_tokens=self.config.map_max_tokens, stage=stage, notes=notes)
        check_window(self.llm, request, stage=stage)
        response, u = await call_llm(self.llm, request)
        record = parse_record(response.text, i)
        # ids outside this worker's chunk (or notes) are hallucinated: drop them here
        known = pack.sentence_map
        facts = tuple(
            Fact(f.text, tuple(s for s in f.sentence_ids if s in known or (notes and f"[{s}]" in notes)))
            for f in record.facts
        )
        return replace(record, facts=facts), u

    async def _parallel(self, question: str, packs: Sequence[PackedContext], usage: list[CallUsage],
                        tick: Callable[[], None]) -> list[MapRecord]:
        sem = asyncio.Semaphore(self.config.max_concurrency)

        async def worker(i: int, pack: PackedContext) -> tuple[MapRecord, CallUsage]:
            async with sem:
                out = await self._map_one(question, pack, i)
            tick()
            return out

        results = await asyncio.gather(*(worker(i, p) for i, p in enumerate(packs)))
        usage.extend(u for _, u in results)
        return [r for r, _ in results]

    async def _chain(self, question: str, packs: Sequence[PackedContext], usage: list[CallUsage],
                     tick: Callable[[], None]) -> list[MapRecord]:
        records: list[MapRecord] = []
        notes = ""
        for i, pack in enumerate(packs):
            record, u = await self._map_one(question, pack, i, notes=notes)
            tick()
            usage.append(u)
            records.append(record)
            if not record.no_information:
                notes = render_records([record], pack.sentence_map)
        return records

    async def _collapse(
        self,
        question: str,
        records: list[MapRecord],
        smap: SentenceMap,
        usage: list[CallUsage],
        warnings: list[str],
    ) -> list[MapRecord]:
        budget = answer_room(self.llm, prompts.REDUCE_SYSTEM, question, self.config.reduce_max_tokens)
        for round_ in range(self.config.max_collapse_rounds):
            if self.llm.count_tokens(render_records(records, smap)) <= budget or len(records) == 1:
                return records
            groups: list[list[MapRecord]] = [[]]
            for r in records:
                if groups[-1] and self.llm.count_tokens(render_records(groups[-1] + [r], smap)) > budget:
                    groups.append([])
                groups[-1].append(r)
            if len(groups) == len(records):  # every record alone fills the window: pair them anyway
                groups = [records[i : i + 2] for i in range(0, len(records), 2)]
            merged: list[MapRecord] = []
            for gi, g in enumerate(groups):
                if len(g) == 1:
                    merged.append(g[0])
                    continue
                stage = f"mr.collapse[{round_}.{gi}]"
                request = prompts.collapse_request(
                    question, render_records(g, smap), max_tokens=self.config.map_max_tokens, stage=stage
                )
                try:
                    check_window(self.llm, request, stage=stage)
                except ContextWindowExceeded:
                    merged.extend(g)
                    continue
                response, u = await call_llm(self.llm, request)
                usage.append(u)
                rec = parse_record(response.text, min(r.group for r in g))
                if rec.warning:
                    warnings.append(rec.warning)
                keep = tuple(Fact(f.text, tuple(s for s in f.sentence_ids if s in smap)) for f in rec.facts)
                merged.append(replace(rec, facts=keep))
            records = merged
        if self.llm.count_tokens(render_records(records, smap)) > budget:
            warnings.append("map-reduce notes still exceed the window after collapsing; lowest-confidence notes dropped")
            records = sorted(records, key=lambda r: -r.confidence)
            while len(records) > 1 and self.llm.count_tokens(render_records(records, smap)) > budget:
                records.pop()
        return records


__all__ = ["Fact", "MapRecord", "MapReduce", "MapReduceConfig", "parse_record", "render_records", "group_passages"]
