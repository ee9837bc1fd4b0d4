#!/usr/bin/env bash
# The router's decisions on real LaRA `comp` questions (LaRA 128k and 32k documents) where the
# rules pick compressed-lc: reasons and predicted tokens per route, as JSON under
# eval_results/compress/route_examples/ (no LLM call: `ctxroute route` only).
# Usage: benchmarks/compress_route_examples.sh [DATA_DIR]   (default ../shared/data)
# Ingests three LaRA documents with the default embedder (all-MiniLM-L6-v2) into a throwaway
# CTXROUTE_HOME (a few minutes on 2 cores), then routes:
# - gpt-4o (frontier, usable window 64k): 128k documents (86k and 105k tokens) do not fit, their
#   compressed text at ratio 0.35 does -> compressed-fits;
# - gpt-4o with a 15k-token budget on a 32k document (19k tokens) that fits the window: LC is
#   over the budget, compressed-lc is not -> compressed-fits;
# - the same question for a small model (gpt-4o-mini): not compressed (LaRA: small models gain
#   most from retrieval).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
D="$DATA/LaRA/datasets"
[ -d "$D" ] || { echo "LaRA not found at $D (see ../shared/data/README.md)" >&2; exit 2; }
export CTXROUTE_HOME="${CTXROUTE_HOME_EXAMPLES:-$(mktemp -d)}" HF_HUB_OFFLINE=1
OUT=eval_results/compress/route_examples
mkdir -p "$OUT"
CR=".venv/bin/ctxroute"
if ! $CR collections show lara-comp >/dev/null 2>&1; then
  $CR ingest "$D/128k/paper/128k_paper_0.md" "$D/128k/financial/2U, Inc..txt" "$D/32k/paper/32k_paper_0.md" \
    --collection lara-comp >/dev/null
fi
doc_id() {  # the id of the document whose source ends with $1
  .venv/bin/python - "$1" <<'PY'
import os, sys
from pathlib import Path
from ctxroute.retrievers.collection import CollectionStore
c = CollectionStore(Path(os.environ["CTXROUTE_HOME"]) / "collections").open("lara-comp")
print(next(d.id for d in c.documents() if str(d.source).endswith(sys.argv[1])))
PY
}
PAPER=$(doc_id "128k_paper_0.md"); FIN=$(doc_id "2U, Inc..txt"); P32=$(doc_id "32k_paper_0.md")
route() {  # name profile doc question [extra options]
  local name=$1 profile=$2 doc=$3 q=$4; shift 4
  $CR route "$q" --collection lara-comp --doc "$doc" --profile "$profile" --policy rules --json "$@" > "$OUT/$name.json"
  .venv/bin/python - "$OUT/$name.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
est = {e["route"]: e for e in d.get("estimates", [])}
tok = ", ".join(f"{r} {est[r]['prompt_tokens']:,}" for r in ("lc", "compressed-lc", "hybrid", "rag") if r in est)
print(f"{sys.argv[1]}: {d['route']} | {d['reasons'][0]} | predicted prompt tokens: {tok}")
PY
}
exec > >(tee "$OUT/summary.txt")
route paper128_gpt4o_tinygsm gpt-4o "$PAPER" "How do the TinyGSM approach in paper 0 and the Orca-Math method in paper 4 differ in terms of dataset size and model performance on the GSM8K benchmark?"
route paper128_gpt4o_preference gpt-4o "$PAPER" "In paper 2 and paper 3, how do the approaches differ in handling the scarcity and cost of preference data for aligning large language models with human feedback?"
route fin128_gpt4o_ebitda gpt-4o "$FIN" "How did the adjusted EBITDA change from 2022 to 2023 for both the Degree Program Segment and the Alternative Credential Segment?"
route paper32_gpt4o_budget15k gpt-4o "$P32" "How do papers 0 and 1 differ in their application of LSTM and its variants in the context of their respective domains?" --budget-tokens 15000
route paper32_gpt4o_nobudget gpt-4o "$P32" "How do papers 0 and 1 differ in their application of LSTM and its variants in the context of their respective domains?"
route paper128_gpt4omini_tinygsm gpt-4o-mini "$PAPER" "How do the TinyGSM approach in paper 0 and the Orca-Math method in paper 4 differ in terms of dataset size and model performance on the GSM8K benchmark?"
