#!/usr/bin/env python3
"""Golden logits of SmolLM2-135M-Instruct from an independent implementation (Hugging Face transformers,
reading the same GGUF, weights dequantized from Q4_1 to fp32), for tests/test_hf_logits.cc.

Dev-only: needs torch, transformers, accelerate, gguf (not needed by the build or the tests). Run:
  python3 scripts/hf_reference.py ~/.cache/qoq/models/SmolLM2-135M-Instruct.Q4_1.gguf tests/data/hf/smollm2_logits.json
For every prompt it stores the token ids (from HF's tokenizer, so the check does not depend on ours) and, at every
position, the logit range over the whole vocabulary, the top-24 logits and 24 fixed random entries.
With --full-dump DIR it also writes every logit of every position (float32 .npy) for a one-off full comparison.
"""
import json, os, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little girl named Lily. She loved to play",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Quantization reduces the precision of weights and activations: 4-bit weights, 8-bit activations and a 4-bit KV cache.",
    "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n",
    " = Valkyria Chronicles III = \n\n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese : 戦場のヴァルキュリア3 , lit",
]

def main():
    path, out = sys.argv[1], sys.argv[2]
    full_dir = sys.argv[sys.argv.index("--full-dump") + 1] if "--full-dump" in sys.argv else None
    d, f = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    rng = np.random.default_rng(1234)
    cases = []
    for i, p in enumerate(PROMPTS):
        ids = tok(p, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double().numpy()
        if full_dir:
            os.makedirs(full_dir, exist_ok=True)
            np.save(os.path.join(full_dir, f"prompt{i}.npy"), logits.astype(np.float32))
        positions = []
        for t in range(len(ids)):
            row = logits[t]
            top = np.argsort(-row)[:24]
            rand = rng.choice(row.shape[0], 24, replace=False)
            idx = sorted(set(top.tolist()) | set(rand.tolist()))
            positions.append({"range": float(row.max() - row.min()), "argmax": int(row.argmax()),
                              "idx": idx, "logit": [round(float(row[j]), 5) for j in idx]})
        cases.append({"prompt": p, "ids": ids, "positions": positions})
    meta = {"model": f, "implementation": "transformers " + __import__("transformers").__version__ +
            ", torch " + torch.__version__ + ", fp32, CPU", "cases": cases}
    with open(out, "w") as fh:
        json.dump(meta, fh, separators=(",", ":"))
    print(f"wrote {out}: {len(cases)} prompts, {sum(len(c['ids']) for c in cases)} positions")

if __name__ == "__main__":
    main()
