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


def read_wiki(data):
    with open(os.path.join(data, 'wikitext-2-raw', 'wiki.test.raw'), encoding='utf-8') as f:
        return f.read().split('\n')


def wiki_lines(data, n):
    lines = [l for l in read_wiki(data) if l.strip()]
    # A fixed, spread-out selection so headings, numbers and ordinary prose all appear.
    step = max(1, len(lines) // n)
    return lines[::step][:n]


def wiki_line_indices(data, n, max_len=400):
    """Indices (into wiki.test.raw split on '\n') of n spread-out non-empty lines of at most max_len chars;
    fixtures store the index, not the text, to stay small."""
    lines = read_wiki(data)
    cand = [i for i, l in enumerate(lines) if l.strip() and len(l) <= max_len]
    step = max(1, len(cand) // n)
    return cand[::step][:n], lines


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


# ---- Llama-2 tokenizer.model: the sentencepiece package ----

def gen_llama2(data):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(data, 'llama2-tokenizer', 'tokenizer.model'))
    idx, lines = wiki_line_indices(data, 150)
    # Texts without "<s>"/"</s>": qoq splits those out as control ids, plain sentencepiece would not.
    cases = [{'text': t, 'ids': sp.encode(t)} for t in TRICKY if '<s>' not in t and '</s>' not in t]
    cases += [{'line': i, 'ids': sp.encode(lines[i])} for i in idx]
    write('llama2_sp.json', {'generator': f'sentencepiece {spm.__version__} encode (no BOS)', 'cases': cases})


# ---- SmolLM2 (GGUF, byte-level BPE): HF tokenizers with SmolLM2's own pre-tokenizer ----

def gguf_fields(path):
    from gguf import GGUFReader
    r = GGUFReader(path)

    def strs(key):
        f = r.fields[key]
        return [bytes(f.parts[j]).decode('utf-8') for j in f.data]

    def ints(key):
        f = r.fields[key]
        return [int(f.parts[j][0]) for j in f.data]

    def scalar(key):
        f = r.fields[key]
        v = f.parts[f.data[0]]
        return bytes(v).decode('utf-8') if f.types[0].name == 'STRING' else v[0].item()
    return strs, ints, scalar


def smollm2_hf_tokenizer(gguf_path):
    from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders
    strs, ints, scalar = gguf_fields(gguf_path)
    tokens, types, merges = strs('tokenizer.ggml.tokens'), ints('tokenizer.ggml.token_type'), strs('tokenizer.ggml.merges')
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(' ', 1)) for m in merges]))
    # SmolLM2's tokenizer.json: Sequence[Digits(individual_digits=true), ByteLevel(add_prefix_space=false)].
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty in (3, 4)])
    return tok, scalar


def gen_smollm2(data, gguf_path):
    import tokenizers
    tok, scalar = smollm2_hf_tokenizer(gguf_path)
    idx, lines = wiki_line_indices(data, 300)
    enc = lambda t: tok.encode(t, add_special_tokens=False).ids
    cases = [{'text': t, 'ids': enc(t)} for t in TRICKY]
    cases += [{'line': i, 'ids': enc(lines[i])} for i in idx]
    # Cross-check against transformers' own GGUF import where it is available (reported, not stored).
    try:
        from transformers import AutoTokenizer
        ht = AutoTokenizer.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path))
        bad = [c for c in cases if ht.encode(c['text'] if 'text' in c else lines[c['line']],
                                             add_special_tokens=False) != c['ids']]
        print(f'transformers GGUF tokenizer disagrees with the tokenizers reference on {len(bad)} of {len(cases)} cases')
        for c in bad[:5]:
            print('  ', repr(c.get('text', lines[c.get('line', 0)]))[:100])
    except Exception as e:  # noqa: BLE001 - the cross-check is informative only
        print('transformers cross-check skipped:', e)
    write('smollm2.json', {'generator': f'tokenizers {tokenizers.__version__} from the GGUF vocab/merges with '
                                        'SmolLM2 pre-tokenizer', 'cases': cases})


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
    todo = args.only.split(',') if args.only else ['tok512', 'llama2', 'smollm2']
    if 'tok512' in todo:
        gen_tok512(args.data)
    if 'llama2' in todo:
        gen_llama2(args.data)
    if 'smollm2' in todo:
        gen_smollm2(args.data, args.gguf)


if __name__ == '__main__':
    main()
