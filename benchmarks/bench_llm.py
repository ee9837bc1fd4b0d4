"""Embedded LLM (SmolLM2-135M-Instruct, bf16, CPU): first load (GGUF -> bf16 conversion),
warm load, prefill tokens/s and decode tokens/s on a ~2,000-token prompt.

One greedy generation of ``decode_tokens`` forced tokens is timed token by token: prefill is
the time to the first token, decode the rate of the tokens after it. Best of ``repeats`` runs. CPU count and load average are reported with the
numbers: on a shared machine they explain most of the spread. Reference figures on an idle
machine: prefill ~1,400 tok/s, decode ~13 tok/s (bf16).

Run: ``python benchmarks/bench_llm.py [--prompt-tokens 2000] [--decode-tokens 32] [--skip-convert]``
or ``ctxroute bench llm``. No timed assertions: numbers are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.pipelines.llm.local import DEFAULT_CACHE_DIR, LocalLLM  # noqa: E402

FILLER = (
    "The annual report describes revenue, operating margin and headcount for each division. "
    "The Harbor division grew its revenue while the Summit division reduced its costs. "
    "Management expects demand to remain stable, although supply chains remain uncertain. "
)


@dataclass(frozen=True)
class LLMBenchResult:
    model: str
    cpus: int
    load_avg_before: float  # 1-minute load average when the benchmark started
    load_avg_after: float
    torch_threads: int
    convert_s: float | None  # first load: de-quantize the GGUF and write the bf16 copy (None: skipped)
    warm_load_s: float  # later loads read the bf16 copy
    prompt_tokens: int
    prefill_s: float
    prefill_tok_s: float
    decode_tokens: int
    decode_s: float
    decode_tok_s: float


def run(
    *,
    prompt_tokens: int = 2000,
    decode_tokens: int = 32,
    repeats: int = 1,
    cache_dir: Path | None = None,
    convert: bool = True,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> LLMBenchResult:
    """Measure; ``convert=False`` skips the (30-60 s) first-load conversion into a temp dir."""
    import torch

    say = progress or (lambda _msg: None)
    load_before = os.getloadavg()[0]
    convert_s = None
    if convert:
        say("first load: converting the GGUF to bf16 in a temporary directory")
        with tempfile.TemporaryDirectory(prefix="ctxroute-bench-") as tmp:
            fresh = LocalLLM(cache_dir=Path(tmp), threads=threads)
            info = fresh.load()
            convert_s = info.seconds
            if not (cache_dir or DEFAULT_CACHE_DIR.expanduser()).joinpath(fresh.model_dir.name).exists():
                target = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
                target.mkdir(parents=True, exist_ok=True)
                os.replace(fresh.model_dir, target / fresh.model_dir.name)  # keep the work for next time
            del fresh
    say("warm load from the bf16 copy")
    llm = LocalLLM(cache_dir=cache_dir, threads=threads)
    llm.load()  # converts here if the copy is missing and convert=False
    warm = LocalLLM(cache_dir=cache_dir)
    warm_load_s = warm.load().seconds
    del warm

    tok, model = llm.tokenizer, llm.hf_model
    body = FILLER * (prompt_tokens // max(1, len(tok(FILLER, add_special_tokens=False)["input_ids"])) + 1)
    ids = tok(body, add_special_tokens=False)["input_ids"][: max(1, prompt_tokens - 40)]
    messages = [
        {"role": "system", "content": "You summarise reports."},
        {"role": "user", "content": tok.decode(ids) + "\n\nSummarise the report above."},
    ]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    n_prompt = int(enc["input_ids"].shape[1])

    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        """Time of each ``put``: the first carries the prompt, then one per new token."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: object) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def timed(encoded: object, n: int) -> tuple[float, float]:
        """(prefill seconds, decode seconds for n-1 tokens) of one greedy generation of n tokens."""
        clock = Clock()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(**encoded, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                           pad_token_id=tok.eos_token_id, streamer=clock)
        first_token = clock.times[1]
        return first_token - start, clock.times[-1] - first_token

    say("warm-up")
    short = tok.apply_chat_template(messages[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    timed(short, 2)
    say(f"prefill {n_prompt} tokens, decode {decode_tokens} tokens (best of {repeats})")
    runs = [timed(enc, decode_tokens) for _ in range(repeats)]
    prefill_s = min(r[0] for r in runs)
    decode_s = min(r[1] for r in runs)
    return LLMBenchResult(
        model="smollm2-135m-instruct (bf16, transformers, CPU)",
        cpus=os.cpu_count() or 0,
        load_avg_before=round(load_before, 2),
        load_avg_after=round(os.getloadavg()[0], 2),
        torch_threads=torch.get_num_threads(),
        convert_s=None if convert_s is None else round(convert_s, 2),
        warm_load_s=round(warm_load_s, 3),
        prompt_tokens=n_prompt,
        prefill_s=round(prefill_s, 3),
        prefill_tok_s=round(n_prompt / prefill_s, 1),
        decode_tokens=decode_tokens,
        decode_s=round(decode_s, 3),
        decode_tok_s=round((decode_tokens - 1) / max(decode_s, 1e-9), 2),
    )


def markdown(r: LLMBenchResult) -> str:
    convert = "skipped" if r.convert_s is None else f"{r.convert_s:.1f} s"
    return "\n".join(
        [
            f"## Embedded LLM: {r.model}",
            f"machine: {r.cpus} CPUs, torch threads {r.torch_threads}, load average {r.load_avg_before} -> {r.load_avg_after} "
            f"({platform.processor() or platform.machine()})",
            "",
            "| measure | value | idle reference |",
            "|---|---|---|",
            f"| first load (GGUF -> bf16 copy) | {convert} | 30-40 s |",
            f"| warm load (bf16 copy) | {r.warm_load_s:.2f} s | < 1 s |",
            f"| prefill ({r.prompt_tokens} tokens) | {r.prefill_tok_s:,.0f} tok/s ({r.prefill_s:.2f} s) | ~1,400 tok/s |",
            f"| decode ({r.decode_tokens} tokens) | {r.decode_tok_s:.1f} tok/s | ~13 tok/s |",
        ]
    )


def to_json(r: LLMBenchResult) -> str:
    return json.dumps(asdict(r), indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompt-tokens", type=int, default=2000)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--skip-convert", action="store_true", help="Do not time the first-load conversion.")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = run(
        prompt_tokens=args.prompt_tokens, decode_tokens=args.decode_tokens, repeats=args.repeats, cache_dir=args.cache_dir,
        convert=not args.skip_convert, threads=args.threads, progress=lambda m: print(f"... {m}", file=sys.stderr),
    )
    print(markdown(result))
    if args.out:
        args.out.write_text(to_json(result))


if __name__ == "__main__":
    main()
