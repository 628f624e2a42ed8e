#!/usr/bin/env python3
"""Generates the golden tokenizer fixtures under tests/data/tokenizer/ from reference implementations.

Never needed by the build or the tests; re-run it when a fixture must change:
  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers sentencepiece gguf jinja2 transformers
  /tmp/tokvenv/bin/python scripts/gen_tokenizer_fixtures.py [--data ../shared/data] [--gguf ~/.cache/qoq/models/...]

References: tok512 -> the independent Python re-implementation of llama2.c's algorithm below;
Llama-2 tokenizer.model -> the `sentencepiece` package; SmolLM2 (GGUF) -> HF `tokenizers` built from the GGUF
vocabulary/merges with SmolLM2's pre-tokenizer; chat templates -> jinja2 rendering the template stored in the GGUF.
"""
import argparse
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'tests', 'data', 'tokenizer')

TRICKY = [
    '',
    ' ',
    'Hello world',
    'Hello  world   with    spaces',
    ' leading space',
    'trailing space ',
    'line one\nline two\n\nline four\n',
    'tabs\tand\r\nCRLF',
    "I'm sure you'll see they've done it, isn't it? WE'LL SEE. She'd",
    '1234567890 3.14159 1,000,000 2024-05-01 $42.00 0x1F',
    'Emoji: 😀🎉👍🏽 family 👨‍👩‍👧',
    'CJK: 日本語のテキスト 中文字符 한국어',
    'Accents: café naïve Ünïcödé façade Ørsted',
    'Math: ∑ x² ≤ ∞ — “quotes” ‘single’ … ½',
    'Code: def f(x):\n    return x**2  # comment\n',
    '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
    'text<|endoftext|>more',
    '   \n\n   \t  ',
    'ﬁ ligature and ℌ and Ⅻ roman ²³',
    '\u00a0non-breaking\u2009thin\u3000ideographic',
    'a' * 300,
]


def wiki_lines(data, n):
    with open(os.path.join(data, 'wikitext-2-raw', 'wiki.test.raw'), encoding='utf-8') as f:
        lines = [l for l in f.read().split('\n') if l.strip()]
    # A fixed, spread-out selection so headings, numbers and ordinary prose all appear.
    step = max(1, len(lines) // n)
    return lines[::step][:n]


# ---- tok512 (llama2.c): an independent re-implementation of run.c's encode ----

def load_tok512(path):
    data = open(path, 'rb').read()
    pos, pieces, scores = 4, [], []
    while pos < len(data):
        score, n = struct.unpack_from('<fi', data, pos)
        pos += 8
        pieces.append(data[pos:pos + n])
        scores.append(score)
        pos += n
    return pieces, scores


def tok512_encode(pieces, scores, text):
    # Dummy prefix, chars (byte fallback), merge the best-scoring pair, leftmost first. Ids 0..2 (<unk>, BOS,
    # EOS) and byte pieces never take part in lookups or merges, as in SentencePiece.
    is_byte = lambda p: len(p) == 6 and p.startswith(b'<0x')
    lookup = {p: i for i, p in reversed(list(enumerate(pieces))) if i >= 3 and not is_byte(p)}
    byte_id = {int(p[3:5], 16): i for i, p in enumerate(pieces) if is_byte(p)}
    if not text:
        return []
    ids = []
    for ch in ' ' + text:
        b = ch.encode('utf-8')
        ids += [lookup[b]] if b in lookup else [byte_id[x] for x in b]
    while True:
        best = None
        for i in range(len(ids) - 1):
            m = pieces[ids[i]] + pieces[ids[i + 1]]
            if m in lookup and (best is None or scores[lookup[m]] > best[0]):
                best = (scores[lookup[m]], i, lookup[m])
        if best is None:
            return ids
        ids[best[1]:best[1] + 2] = [best[2]]


def gen_tok512(data):
    pieces, scores = load_tok512(os.path.join(data, 'stories260K', 'tok512.bin'))
    texts = TRICKY[:15] + ['Once upon a time, there was a little girl named Lily. She loved to play outside.'] + \
        wiki_lines(data, 20)
    cases = [{'text': t, 'ids': tok512_encode(pieces, scores, t)} for t in texts]
    write('tok512.json', {'generator': 'python re-implementation of llama2.c encode', 'cases': cases})


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, ensure_ascii=False, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default=os.path.join(HERE, '..', '..', 'shared', 'data'))
    ap.add_argument('--gguf', default=os.path.expanduser('~/.cache/qoq/models/SmolLM2-135M-Instruct.Q4_1.gguf'))
    ap.add_argument('--only', default='')
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    todo = args.only.split(',') if args.only else ['tok512']
    if 'tok512' in todo:
        gen_tok512(args.data)


if __name__ == '__main__':
    main()
