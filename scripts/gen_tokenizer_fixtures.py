#!/usr/bin/env python3
"""Generates the golden tokenizer fixtures under tests/data/tokenizer/ from reference implementations.

Never needed by the build or the tests; re-run it when a fixture must change:
  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers sentencepiece gguf jinja2 transformers
  /tmp/tokvenv/bin/python scripts/gen_tokenizer_fixtures.py [--data ../shared/data] [--gguf ~/.cache/qoq/models/...]
      [--only tok512,llama2,smollm2,hfjson,pretok,chat]          (about 2 minutes on 2 cores)

References: tok512 -> the independent Python re-implementation of llama2.c's algorithm below;
Llama-2 tokenizer.model -> the `sentencepiece` package; SmolLM2 (GGUF) -> HF `tokenizers` built from the GGUF
vocabulary/merges with SmolLM2's pre-tokenizer (transformers' own GGUF import drops the Digits step, see
gen_smollm2); tiny tokenizer.json files -> trained and run by HF `tokenizers`; pre-tokenizer splits ->
`tokenizers` pre_tokenize_str; chat templates -> jinja2 (configured as transformers does) rendering the GGUF's
template and Qwen2/Qwen2.5-style/Llama-3/Llama-2 template texts. Whole-file ids are pinned by count + FNV-1a.
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
    'ctrl\x13bytes\x04 SmolLM2 has no token for',
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


FULL_TEXTS = ['wikitext-2-raw/wiki.test.raw', 'calibration/moby-dick.txt', 'calibration/state-of-the-union.txt']


def fnv1a64(ids):
    """FNV-1a over the ids as little-endian int32: lets a fixture pin millions of ids in a few bytes."""
    h = 0xcbf29ce484222325
    for b in struct.pack(f'<{len(ids)}i', *ids):
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return f'{h:016x}'


def full_text_digests(data, encode):
    out = []
    for rel in FULL_TEXTS:
        with open(os.path.join(data, rel), encoding='utf-8') as f:
            ids = encode(f.read())
        out.append({'file': rel, 'count': len(ids), 'fnv1a64': fnv1a64(ids)})
        print(f'  {rel}: {len(ids)} ids')
    return out


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
    write('llama2_sp.json', {'generator': f'sentencepiece {spm.__version__} encode (no BOS)', 'cases': cases,
                             'full_texts': full_text_digests(data, sp.encode)})


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
                                        'SmolLM2 pre-tokenizer', 'cases': cases,
                           'full_texts': full_text_digests(data, enc)})


# ---- pre-tokenizer splits of each GGUF family name, from HF tokenizers' own pre-tokenizers ----

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xa1, 0xad)) + list(range(0xae, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def gen_pretok():
    from tokenizers import pre_tokenizers as pt, Regex
    fams = {
        'gpt-2': pt.ByteLevel(add_prefix_space=False, use_regex=True),
        'llama-bpe': pt.Sequence([pt.Split(Regex(LLAMA3_PATTERN), behavior='isolated'),
                                  pt.ByteLevel(add_prefix_space=False, use_regex=False)]),
        'qwen2': pt.Sequence([pt.Split(Regex(QWEN2_PATTERN), behavior='isolated'),
                              pt.ByteLevel(add_prefix_space=False, use_regex=False)]),
        'smollm': pt.Sequence([pt.Digits(individual_digits=True),
                               pt.ByteLevel(add_prefix_space=False, use_regex=True)]),
    }
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    texts = [t for t in TRICKY if t] + ["Hello world's 12345  x\n\n  y", "I'M HERE!!\r\n\tok", " 2024abc\u0085z\u2028w",
                                        "ſ's 'S 'LL", "a\u00a0 b \u3000c"]
    out = {n: [[bytes(u2b[c] for c in piece).decode('utf-8') for piece, _ in p.pre_tokenize_str(t)] for t in texts]
           for n, p in fams.items()}
    write('pretokenizers.json', {'generator': 'tokenizers pre_tokenize_str', 'texts': texts, 'splits': out})


# ---- tiny tokenizer.json files trained with HF tokenizers, one per pre-tokenizer family ----

def gen_hf_json(data):
    import tokenizers
    from tokenizers import Tokenizer, Regex, models, trainers, pre_tokenizers as pt, decoders, normalizers, processors
    train = [l for l in read_wiki(data)[:3000] if l.strip()]
    idx, lines = wiki_line_indices(data, 40)
    flavours = {
        # SmolLM2's pre-tokenizer, merges saved as "a b" strings (the older tokenizer.json form).
        'smollm': dict(pre=pt.Sequence([pt.Digits(individual_digits=True),
                                        pt.ByteLevel(add_prefix_space=False, use_regex=True)]),
                       specials=['<|endoftext|>', '<|im_start|>', '<|im_end|>'], string_merges=True),
        # Llama-3: Split(regex) + ByteLevel(use_regex=false), ignore_merges, BOS by TemplateProcessing.
        'llama3': dict(pre=pt.Sequence([pt.Split(Regex(LLAMA3_PATTERN), behavior='isolated'),
                                        pt.ByteLevel(add_prefix_space=False, use_regex=False)]),
                       specials=['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>',
                                 '<|end_header_id|>', '<|eot_id|>'], ignore_merges=True, bos='<|begin_of_text|>'),
        # Qwen2: NFC normalizer + Split(regex) + ByteLevel(use_regex=false).
        'qwen2': dict(pre=pt.Sequence([pt.Split(Regex(QWEN2_PATTERN), behavior='isolated'),
                                       pt.ByteLevel(add_prefix_space=False, use_regex=False)]),
                      specials=['<|endoftext|>', '<|im_start|>', '<|im_end|>'], nfc=True),
    }
    for name, f in flavours.items():
        tok = Tokenizer(models.BPE(ignore_merges=f.get('ignore_merges', False)))
        if f.get('nfc'):
            tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = f['pre']
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=f['specials'], show_progress=False,
                                      initial_alphabet=pt.ByteLevel.alphabet())
        tok.train_from_iterator(train, trainer)
        if f.get('ignore_merges'):
            # A token no merge sequence reaches: only ignore_merges can produce it. Added before 'qoqword' so
            # that HF's id for the added token (the vocabulary size) stays unique.
            j = json.loads(tok.to_str())
            j['model']['vocab']['zqxj'] = len(j['model']['vocab'])
            tok = Tokenizer.from_str(json.dumps(j))
        tok.add_tokens(['qoqword'])  # a non-special added token: split out of the text all the same
        if f.get('bos'):
            bos = f['bos']
            tok.post_processor = processors.TemplateProcessing(single=f'{bos} $A', pair=f'{bos} $A $B',
                                                               special_tokens=[(bos, tok.token_to_id(bos))])
        j = json.loads(tok.to_str())
        if f.get('string_merges'):
            j['model']['merges'] = [' '.join(m) if isinstance(m, list) else m for m in j['model']['merges']]
        by_id = {}
        for content, i in list(j['model']['vocab'].items()) + [(t['content'], t['id']) for t in j['added_tokens']]:
            assert by_id.setdefault(i, content) == content, f'{name}: id {i} is both {by_id[i]!r} and {content!r}'
        texts = TRICKY + ['NFC: e\u0301 A\u030a caf\u00e9', 'qoqword and qoqwords', '<|im_start|><|im_end|>x',
                         'zqxj zqxjzqxj']
        cases = [{'text': t, 'ids': tok.encode(t).ids} for t in texts]
        cases += [{'line': i, 'ids': tok.encode(lines[i]).ids} for i in idx]
        write(f'hf_{name}.tokenizer.json', j)
        write(f'hf_{name}.golden.json', {'generator': f'tokenizers {tokenizers.__version__} encode '
                                                      '(add_special_tokens=True)', 'cases': cases})


# ---- chat templates: the real Jinja text rendered by jinja2 the way transformers does ----

QWEN2_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "{{ '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n' }}{% endif %}"
                  "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
                   "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
                   "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                   "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
                   "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
                   "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
                   "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                   "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                   "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
                   "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
                   "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
                   "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
                   "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")

# The non-tool part of Qwen2.5-Instruct's template (its default system prompt sits in an else branch).
QWEN25_STYLE_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\") %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n")

CONVERSATIONS = [
    [],
    [{'role': 'user', 'content': 'What is the capital of France?'}],
    [{'role': 'system', 'content': 'You are terse.'}, {'role': 'user', 'content': 'Hi!'}],
    [{'role': 'user', 'content': '  padded question \n'}, {'role': 'assistant', 'content': ' An answer. '},
     {'role': 'user', 'content': 'Thanks; and 2+2?'}],
    [{'role': 'system', 'content': ''}, {'role': 'user', 'content': 'Empty system.'}],
    [{'role': 'system', 'content': 'Multi\nline\nsystem'}, {'role': 'user', 'content': 'Emoji 😀 and 日本語'},
     {'role': 'assistant', 'content': 'Sure.'}, {'role': 'user', 'content': 'More?'}],
]


def render(template, messages, bos, eos):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise ValueError(msg)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)  # as transformers renders
    env.globals['raise_exception'] = raise_exception
    return env.from_string(template).render(messages=messages, bos_token=bos, eos_token=eos,
                                             add_generation_prompt=True)


def gen_chat(gguf_path):
    import jinja2
    _, _, scalar = gguf_fields(gguf_path)
    templates = [
        ('smollm2-gguf', scalar('tokenizer.chat_template'), '<|im_start|>', '<|im_end|>'),
        ('qwen2', QWEN2_TEMPLATE, '', '<|im_end|>'),
        ('llama3', LLAMA3_TEMPLATE, '<|begin_of_text|>', '<|eot_id|>'),
        ('llama2', LLAMA2_TEMPLATE, '<s>', '</s>'),
        ('qwen2.5-style', QWEN25_STYLE_TEMPLATE, '', '<|im_end|>'),
    ]
    out = []
    for name, text, bos, eos in templates:
        cases = []
        for m in CONVERSATIONS:
            if not m and name == 'qwen2.5-style':
                continue  # Jinja fails on messages[0] there; qoq renders the bare generation prompt instead
            try:
                cases.append({'messages': m, 'rendered': render(text, m, bos, eos)})
            except Exception as e:  # noqa: BLE001 - the template itself rejects it: qoq must throw too
                cases.append({'messages': m, 'error': str(e)})
        out.append({'name': name, 'template': text, 'bos': bos, 'eos': eos, 'cases': cases})
    write('chat_templates.json', {'generator': f'jinja2 {jinja2.__version__}', 'templates': out})


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
    todo = args.only.split(',') if args.only else ['tok512', 'llama2', 'smollm2', 'chat', 'pretok', 'hfjson']
    if 'tok512' in todo:
        gen_tok512(args.data)
    if 'llama2' in todo:
        gen_llama2(args.data)
    if 'smollm2' in todo:
        gen_smollm2(args.data, args.gguf)
    if 'hfjson' in todo:
        gen_hf_json(args.data)
    if 'pretok' in todo:
        gen_pretok()
    if 'chat' in todo:
        gen_chat(args.gguf)


if __name__ == '__main__':
    main()
