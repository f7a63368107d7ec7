"""Greedy decode throughput with a KV cache: ours (foresight.model.generate) vs transformers' `generate`.

Same weights (SmolLM2-135M-Instruct, the built-in model, dequantized to float32), same chat prompts, same number of
new tokens (min_new_tokens = max_new_tokens on both sides, so neither stops early), CPU, 2 threads by default.
Tokens/s counts new tokens of all rows divided by the whole call (prompt forward included). Batch 8 uses 8
different prompts (ours right-pads them and decodes each row at its own length; transformers left-pads).

`--weights int8` times our int8 weight-only path (foresight.model.quantize, `load_model(quantize="int8")`) against
transformers on the float32 weights; its tokens then differ from float32 after a while, and the last column says
how many of each row's first tokens agree.

    .venv/bin/python bench/decode.py [--weights float|int8] [--new-tokens 128] [--repeats 5] [--threads 2]
                                     [--device cpu]

Last line: `ratio: X` = our tokens/s / transformers' tokens/s at batch 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_ratio, time_interleaved  # noqa: E402

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain photosynthesis to a child in two sentences.",
    "List three prime numbers.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What does a compiler do?",
    "Translate 'good morning' into Spanish and German, and say which languages they are.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--weights", default="float", choices=["float", "int8"],
                        help="our weights: float (float32, exact) or int8 (weight-only); transformers: float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from foresight.model.generate import generate
    from foresight.weights.load import load_model

    loaded = load_model(args.model, device=args.device, dtype=torch.float32,
                        quantize=None if args.weights == "float" else args.weights)
    ours, tok = loaded.model, loaded.tokenizer
    # The same float32 weights, read by transformers from the Hugging Face folder our loader converted them into.
    theirs = AutoModelForCausalLM.from_pretrained(str(loaded.source), dtype=torch.float32).to(args.device).eval()
    pad_id = tok.eos_ids[0]
    n = args.new_tokens

    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        prompts = [tok.apply_chat_template([{"role": "user", "content": q}]) for q in
                   (QUESTIONS * batch)[:batch]]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=args.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=args.device)

        def run_ours():
            return generate(ours, prompts, max_new_tokens=n, min_new_tokens=n, stop_token_ids=tok.eos_ids)

        @torch.inference_mode()
        def run_theirs():
            out = theirs.generate(input_ids, attention_mask=attention_mask, max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False, pad_token_id=pad_id, eos_token_id=tok.eos_ids)
            return out[:, width:].tolist()

        a, b = run_ours(), run_theirs()
        # Per row, how many new tokens agree before the first difference; the fewest of any row.
        same = min(next((i for i, (x, y) in enumerate(zip(r, s)) if x != y), n) for r, s in zip(a, b))
        seconds = time_interleaved({"ours": run_ours, "transformers": run_theirs}, repeats=args.repeats, warmup=1)
        ours_tps, theirs_tps = (batch * n / median(seconds[k]) for k in ("ours", "transformers"))
        rows.append((batch, ours_tps, theirs_tps, same))

    weights = "float32" if args.weights == "float" else f"ours {args.weights} weights, transformers float32"
    print(f"model {loaded.name}, {n} new tokens, greedy, {weights}, {args.device}, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'batch':>5}  {'ours tok/s':>10}  {'HF tok/s':>10}  {'ours/HF':>7}  same tokens")
    for batch, a, b, same in rows:
        agree = "yes" if same == n else ("NO: " if args.weights == "float" else "") + f"first {same} of {n}"
        print(f"{batch:>5}  {a:>10.1f}  {b:>10.1f}  {a / b:>7.2f}  {agree}" + (" (the row that agrees least)"
                                                                                 if batch > 1 and same < n else ""))
    first = rows[0]
    print_ratio(first[1] / first[2])


if __name__ == "__main__":
    main()
