#!/usr/bin/env python3
"""tests/tokenizer_hf.py: our tokenizer (through tests/tokenize_cli) against
Hugging Face `tokenizers` on the same tokenizer.json files.

    tokenizer_hf.py PATH/TO/tokenize_cli

Tokenizers compared:
  fixture   the bundled tiny-llama tokenizer (GPT-2 byte-level BPE)
  sp        SentencePiece-style BPE as Llama 2: byte_fallback, <unk>,
            normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer,
            decoder Replace/ByteFallback/Fuse/Strip, <s> template
  sp_meta   the same with a Metaspace pre-tokenizer (prepend "first",
            no split), no normalizer (Llama 2 converted with legacy=False)
  sp_split  Metaspace(prepend "always", split) + a Metaspace decoder
  gemma     Gemma's (transformers' GemmaTokenizer): <pad> <eos> <bos> <unk>
            <mask> then the bytes, byte_fallback, normalizer Replace(" ",
            "▁") with no prefix, Split(" ", merged_with_previous), decoder
            Replace/ByteFallback/Fuse (no Strip), <bos> template
  llama3    Split(Llama 3 regex, Isolated) + ByteLevel(use_regex false),
            ignore_merges, <|begin_of_text|> template
  qwen2     NFC + Split(Qwen2 regex) + ByteLevel, no template
  and one per family of the other components (component_tokenizer):
  Digits, Punctuation, Whitespace, WhitespaceSplit, every Split behaviour
  and invert, NFD/NFKC/NFKD, Lowercase, Strip, Replace, Prepend,
  RobertaProcessing, multi-token templates, Fuse/Replace/Strip decoders;
  smollm2   the real model's tokenizer, read from its GGUF (when cached)
The trained ones are trained here on calib.txt (vocab 2000). For each:
encode of eval.txt (whole, with and without special tokens, and line by
line) must equal HF's ids exactly, and so must an extra text with emoji,
CJK, accents, tabs, CRLF and special tokens; decode must equal HF's
decode(ids, skip_special_tokens=False) for those ids and for random id
sequences (split multi-byte characters -> U+FFFD as HF does).
Exits 77 (skip) without the `tokenizers` module or the fixtures."""
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
except ImportError:
    print("SKIP: python module 'tokenizers' is not installed (pip install tokenizers)")
    sys.exit(77)

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

EXTRA = ("Hello world! naïve café résumé Zürich Ελληνικά 日本語のテキスト 中文文本\n"
         "emoji 🤖🚀 ok 😀😀 👨‍👩‍👧 flags 🇫🇷\r\nCRLF line\r\n\ttabbed\t\tdouble tab\n"
         "  leading and trailing   \n\n\n"
         "numbers 1234567 3.14159 and 'quotes' don't I'M you'LL\n"
         "specials: <s> </s> <unk> <|endoftext|> <|begin_of_text|>x<|end_of_text|>\n"
         "ŉ ǅ ẞ ﬁ \u00a0nbsp\u00a0 \u2003em space\u3000ideographic\n"
         "mixed scripts: Привет мир, مرحبا بالعالم, नमस्ते दुनिया, 안녕하세요\n"
         "already NFC: தமிழ் கா ಕೂ Tiếng Việt שָׁלוֹם ὅτι\n"
         "zero\u200bwidth and soft\u00adhyphen, control \x01\x7f chars\n"
         "forms: ﬁ ＡＢＣ１２３ ① x² Å Ω ℌ ﬀ ǆ İstanbul ΣΊΣΥΦΟΣ café cafe\u0301 한국어 ｶﾀｶﾅ\n"
         "digits 0123456789 ٣٤٥ ௧௨ 12,345.67 $9.99 (a+b)*c=d; x<y>z {k:v} [i] a/b\\c #tag @me\n"
         "added: hello world [MASK]x  [MASK]  a <mask>  b Alice Alicea _Alice naïve <|eot_id|>\n")

# fragments for random strings (fuzzing encode against HF)
FRAGMENTS = (list("abcXYZ019 .,;!?'\"-_()\t\r") + [" ", "  ", "\r\n", "\u00a0", "\u3000", "é", "ü",
             "ß", "日", "本", "語", "🤖", "😀", "🇫", "\u200d", "Ж", "ع", "न", "्", "안", "'s", "'LL",
             "the", " the", "ing", "123456", "<s>", "</s>", "<unk>", "<|endoftext|>", "[MASK]",
             "<mask>", "Alice", "hello world", "▁", "<0x41>", "\x00", "\x1f",
             # combining marks, Indic vowel signs, Hangul jamo: NFC composes some pairs
             "\u0301", "\u0327", "\u0323", "\u05b8", "\u05bc", "e", "o", "A", "க", "\u0bbe",
             "\u0bc6", "\u1100", "\u1161", "\u11a8", "\u212b", "\u0958",
             # compatibility forms, digits of other scripts, punctuation runs
             "ﬁ", "Ａ", "１", "①", "²", "İ", "Σ", "٣", "...", "?!", "—", "«", "»", "$", "+", "=", "42"])

failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def read_text(path):
    with open(path, "rb") as f:  # bytes: no newline translation
        return f.read().decode("utf-8")


class Ours:
    def __init__(self, cli, tok_json, tmp):
        self.cli, self.tok_json, self.tmp = cli, tok_json, tmp

    def _run(self, args):
        r = subprocess.run([self.cli, self.tok_json] + args, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode("utf-8", "replace").strip())
        return r.stdout

    def encode(self, text, special=False, lines=False):
        path = os.path.join(self.tmp, "input.txt")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8"))
        out = self._run([path] + (["--special"] if special else []) +
                        (["--lines"] if lines else [])).decode()
        if not lines:
            return [int(x) for x in out.split()]
        return [[int(x) for x in line.split()] for line in out.split("\n")[:-1]]

    def decode(self, ids):
        path = os.path.join(self.tmp, "ids.txt")
        with open(path, "w") as f:
            f.write(" ".join(map(str, ids)))
        out = self._run(["--decode", path])
        return out.decode("utf-8")  # strict: our output must be valid UTF-8


def compare_encode(name, what, ours, theirs):
    if ours != theirs:
        i = first_diff(ours, theirs)
        fail(f"{name}: {what}: ids differ at {i} (ours {len(ours)} ids, HF {len(theirs)}): "
             f"ours {ours[max(0, i - 3):i + 5]} HF {theirs[max(0, i - 3):i + 5]}")
        return False
    return True


def check(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text):
    n_before = failures
    try:
        check_all(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text)
    except RuntimeError as e:
        fail(f"{name}: our tokenize_cli failed: {e}")
    print(f"{name}: {'ok' if failures == n_before else 'FAILED'}")


def check_all(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text):
    ours = Ours(cli, tok_json, tmp)
    # whole eval.txt, with and without the template
    ids = hf.encode(eval_text, add_special_tokens=False).ids
    compare_encode(name, "eval.txt", ours.encode(eval_text), ids)
    compare_encode(name, "eval.txt with special tokens", ours.encode(eval_text, special=True),
                   hf.encode(eval_text, add_special_tokens=True).ids)
    # line by line (newlines kept, as our CLI splits)
    lines = lines_text.splitlines(keepends=True)
    hf_lines = [e.ids for e in hf.encode_batch(lines, add_special_tokens=False)]
    ours_lines = ours.encode(lines_text, lines=True)
    if len(ours_lines) != len(hf_lines):
        fail(f"{name}: per-line: {len(ours_lines)} lines from our CLI, {len(hf_lines)} from HF")
    else:
        bad = [i for i, (a, b) in enumerate(zip(ours_lines, hf_lines)) if a != b]
        if bad:
            i = bad[0]
            fail(f"{name}: per-line: {len(bad)} lines differ, first line {i} {lines[i]!r}: "
                 f"ours {ours_lines[i]} HF {hf_lines[i]}")
    # the extra text: emoji, CJK, accents, tabs, CRLF, special tokens
    for special in (False, True):
        extra_ids = hf.encode(EXTRA, add_special_tokens=special).ids
        compare_encode(name, f"extra text (special={special})", ours.encode(EXTRA, special=special),
                       extra_ids)
    for what, seq in (("extra ids", hf.encode(EXTRA, add_special_tokens=False).ids),
                      ("eval ids", ids[:3000])):
        got, want = ours.decode(seq), hf.decode(seq, skip_special_tokens=False)
        if got != want:
            i = first_diff(got, want)
            fail(f"{name}: decode of {what} differs at char {i}: ours {got[i:i + 20]!r} "
                 f"HF {want[i:i + 20]!r}")
    # random strings, one per line, against HF line by line
    fuzz = []
    for _ in range(int(os.environ.get("TOKENIZER_HF_FUZZ", "300"))):
        fuzz.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randrange(1, 16))).replace("\n", "") + "\n")
    hf_fuzz = [e.ids for e in hf.encode_batch(fuzz, add_special_tokens=False)]
    ours_fuzz = ours.encode("".join(fuzz), lines=True)
    bad = [i for i, (a, b) in enumerate(zip(ours_fuzz, hf_fuzz)) if a != b]
    if len(ours_fuzz) != len(hf_fuzz) or bad:
        i = bad[0] if bad else 0
        fail(f"{name}: random strings: {len(bad)} of {len(fuzz)} differ, first {fuzz[i]!r}: "
             f"ours {ours_fuzz[i] if i < len(ours_fuzz) else None} HF {hf_fuzz[i]}")
    # random id sequences: split characters, lone fallback bytes, specials
    vocab = hf.get_vocab_size(with_added_tokens=True)
    bad = 0
    for _ in range(60):
        seq = [rng.randrange(vocab) if rng.random() < 0.6 else rng.randrange(min(vocab, 300))
               for _ in range(rng.randrange(1, 24))]
        got, want = ours.decode(seq), hf.decode(seq, skip_special_tokens=False)
        if got != want:
            if not bad:
                fail(f"{name}: decode {seq}: ours {got!r} HF {want!r}")
            bad += 1
    if bad > 1:
        fail(f"{name}: {bad} of 60 random decodes differ")


def train(tok, calib_path, special_tokens, alphabet=None, limit_alphabet=None):
    kw = dict(vocab_size=2000, special_tokens=special_tokens, show_progress=False)
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    if limit_alphabet is not None:
        kw["limit_alphabet"] = limit_alphabet
    tok.train([calib_path], trainers.BpeTrainer(**kw))


def save_model_bytes(tok, out_path, byte_tokens):
    """Save tok with its byte tokens in the model vocabulary only (as
    SentencePiece conversions have them), not as added tokens; reload it."""
    tok.save(out_path)
    with open(out_path, encoding="utf-8") as f:
        data = json.load(f)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    return Tokenizer.from_file(out_path)


def sp_tokenizer(kind, calib_path, out_path):
    """Llama 2 layout: <unk> <s> </s> <0x00>..<0xFF> at ids 0..258 in the
    model vocabulary; only the first three are added tokens. Gemma's:
    <pad> <eos> <bos> <unk> <mask> first."""
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    llama2_decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                        decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    if kind == "gemma":
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
        train(tok, calib_path, ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + byte_tokens,
              limit_alphabet=80)
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                           special_tokens=[("<bos>", 2)])
        tok.add_special_tokens([AddedToken("<start_of_turn>", normalized=False),
                                AddedToken("<end_of_turn>", normalized=False)])
        return save_model_bytes(tok, out_path, byte_tokens)
    if kind == "sp":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
        tok.decoder = llama2_decoder
    elif kind == "sp_meta":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                     split=False)
        tok.decoder = llama2_decoder
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always",
                                                     split=True)
        tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                         decoders.Metaspace(replacement="▁", prepend_scheme="always"),
                                         decoders.Fuse()])
    # a small alphabet so that rare characters (emoji, CJK) go to byte_fallback
    train(tok, calib_path, ["<unk>", "<s>", "</s>"] + byte_tokens, limit_alphabet=80)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    # a normalized added token (sought as "▁hello▁world") and a stripping special one
    tok.add_tokens([AddedToken("hello world", normalized=True)])
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False)])
    return save_model_bytes(tok, out_path, byte_tokens)


def bytelevel_tokenizer(kind, calib_path, out_path):
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    pattern = LLAMA3_PATTERN if kind == "llama3" else QWEN2_PATTERN
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = (["<|begin_of_text|>", "<|end_of_text|>"] if kind == "llama3"
                else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    train(tok, calib_path, specials, alphabet=pre_tokenizers.ByteLevel.alphabet())
    if kind == "llama3":
        tok.add_special_tokens([AddedToken("<|eot_id|>", normalized=False),
                                AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False)])
        tok.add_tokens([AddedToken("Alice", single_word=True, normalized=False)])
    else:
        tok.add_tokens([AddedToken("naïve", normalized=True)])
    if kind == "llama3":
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          special_tokens=[("<|begin_of_text|>", 0)])])
    tok.save(out_path)
    with open(out_path, encoding="utf-8") as f:
        data = json.load(f)
    if kind == "llama3" and not data["model"].get("ignore_merges"):
        fail("llama3: the trained tokenizer.json lost ignore_merges")
    return Tokenizer.from_file(out_path)


COMPONENT_KINDS = ("smollm", "nfkc_whitespace", "nfd_punct", "nfkd_split", "behaviors",
                   "roberta", "bert_template")


def component_tokenizer(kind, calib_path, out_path):
    """Tokenizers built to exercise one family of components each:
    smollm           Digits(individual) + ByteLevel(use_regex): SmolLM2's own
    nfkc_whitespace  NFKC, Lowercase, Replace(Regex), Whitespace, Fuse decoder
    nfd_punct        NFD, Strip, Prepend; Punctuation(contiguous),
                     Digits(grouped), WhitespaceSplit; Replace/Strip decoders
    nfkd_split       NFKD, Replace(String); Split(Regex, Removed, invert) and
                     Split(String, MergedWithPrevious)
    behaviors        Split MergedWithNext, Contiguous (inverted), Removed,
                     Punctuation(merged_with_previous) + ByteLevel
    roberta          ByteLevel with add_prefix_space + RobertaProcessing
    bert_template    a two-token TemplateProcessing + BertProcessing-free
                     template with a trailing special"""
    B = dict(behavior="isolated")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    specials = ["[UNK]", "[CLS]", "[SEP]"]
    alphabet, limit = None, None
    if kind == "smollm":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
        tok.decoder = decoders.ByteLevel()
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif kind == "nfkc_whitespace":
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                               normalizers.Replace(Regex(r"\s+"), " ")])
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.Fuse()
    elif kind == "nfd_punct":
        tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Strip(),
                                               normalizers.Prepend("^")])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Punctuation(behavior="contiguous"),
            pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.WhitespaceSplit()])
        tok.decoder = decoders.Sequence([decoders.Replace("^", "_"), decoders.Fuse(),
                                         decoders.Strip("_", 1, 0)])
    elif kind == "nfkd_split":
        tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Replace("a", "4"),
                                               normalizers.Strip(left=False, right=True)])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[\p{L}\p{N}]+"), behavior="removed", invert=True),
            pre_tokenizers.Split(" ", behavior="merged_with_previous")])
    elif kind == "behaviors":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
            pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="contiguous", invert=True),
            pre_tokenizers.Split(",", behavior="removed"),
            pre_tokenizers.Punctuation(behavior="merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        specials = ["<s>", "</s>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif kind == "roberta":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        specials = ["<s>", "<pad>", "</s>"]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif kind == "bert_template":
        tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Punctuation()])
    train(tok, calib_path, specials, alphabet=alphabet, limit_alphabet=limit)
    if kind == "roberta":
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    elif kind == "bert_template":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] [SEP] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    elif kind == "smollm":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(out_path)
    return Tokenizer.from_file(out_path)



def real_model():
    """The model scripts/fetch-models caches, or None."""
    name = os.path.join("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.environ.get("GPTQ_SMOLLM2"):
        path = os.environ["GPTQ_SMOLLM2"]
    elif os.environ.get("GPTQ_CACHE"):
        path = os.path.join(os.environ["GPTQ_CACHE"], name)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(cache, "gptqd", name)
    return path if os.path.exists(path) else None


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    cli = sys.argv[1]
    fixtures = os.environ.get("GPTQ_FIXTURES", "../shared/fixtures")
    fdir = os.path.join(fixtures, "tiny-llama")
    fixture_json = os.path.join(fdir, "tokenizer.json")
    if not os.path.exists(fixture_json):
        print(f"SKIP: {fixture_json} not found (set GPTQ_FIXTURES)")
        return 77
    eval_text = read_text(os.path.join(fdir, "eval.txt"))
    calib_path = os.path.join(fdir, "calib.txt")
    calib_text = read_text(calib_path)
    rng = random.Random(int(os.environ.get("TOKENIZER_HF_SEED", "1234")))

    with tempfile.TemporaryDirectory() as tmp:
        # (a) the fixture tokenizer on all of eval.txt and calib.txt
        hf = Tokenizer.from_file(fixture_json)
        ours = Ours(cli, fixture_json, tmp)
        for fname, text in (("eval.txt", eval_text), ("calib.txt", calib_text)):
            compare_encode("fixture", fname, ours.encode(text),
                           hf.encode(text, add_special_tokens=False).ids)
        check("fixture", fixture_json, hf, cli, tmp, eval_text, rng, eval_text)

        # (b) SentencePiece-style, (c) byte-level Llama 3 / Qwen2 style
        for kind in ("sp", "sp_meta", "sp_split", "gemma", "llama3", "qwen2"):
            path = os.path.join(tmp, kind + ".json")
            if kind.startswith("sp"):
                hf = sp_tokenizer(kind, calib_path, path)
            else:
                hf = bytelevel_tokenizer(kind, calib_path, path)
            check(kind, path, hf, cli, tmp, eval_text, rng, eval_text)
            if kind in ("sp", "gemma"):
                lo = 3 if kind == "sp" else 5  # the byte tokens' ids
                extra = hf.encode(EXTRA, add_special_tokens=False).ids
                if not any(lo <= i < lo + 256 for i in extra):
                    fail(f"{kind}: the extra text never reached byte_fallback; the test is too weak")

        # Qwen2's NFC on strings that NFC changes (decomposed accents, marks
        # out of canonical order, Hangul jamo, singletons): ids equal HF's
        marks = ["a", "e", "A", "க", "\u0bbe", "\u0bc6", "\u0bd7", "\u1100", "\u1161", "\u11a8",
                 "\u0301", "\u0300", "\u0327", "\u0323", "\u031b", "\u05b8", "\u05bc", "\u05c1",
                 "\u212b", "\u0958", "\u093c", "\u0928", "é", "\uac00", " "]
        qwen = Ours(cli, os.path.join(tmp, "qwen2.json"), tmp)
        nfc = [ "".join(rng.choice(marks) for _ in range(rng.randrange(1, 6))) + "\n" for _ in range(400)]
        nfc.append("cafe\u0301 Å\u0301 \u212b ﬁ\n")
        want = [e.ids for e in hf.encode_batch(nfc, add_special_tokens=False)]
        got = qwen.encode("".join(nfc), lines=True)
        bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
        if len(got) != len(want) or bad:
            i = bad[0] if bad else 0
            fail(f"qwen2 NFC: {len(bad)} of {len(nfc)} differ, first {ascii(nfc[i])}: ours "
                 f"{got[i] if i < len(got) else None} HF {want[i]}")

        # (e) SmolLM2's tokenizer rebuilt from its GGUF: ours (read from the
        # GGUF) against HF tokenizers on the tokenizer.json we make of it,
        # and that JSON in HF tokenizers against llama.cpp's own ids
        model = real_model()
        if not model:
            print("smollm2: skipped (no real model; scripts/fetch-models)")
        else:
            path = os.path.join(tmp, "smollm2.json")
            r = subprocess.run([cli, model, "--export-json", path], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"smollm2: --export-json: {r.stderr.strip()}")
            else:
                hf = Tokenizer.from_file(path)
                check("smollm2", model, hf, cli, tmp, eval_text, rng, eval_text)
                ref_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                                        "smollm2-reference.json")
                ref = json.load(open(ref_path, encoding="utf-8"))
                bad = [v["text"] for v in ref["tokenizer"]
                       if hf.encode(v["text"], add_special_tokens=False).ids != v["ids"]]
                if bad:
                    fail(f"smollm2: HF tokenizers on our tokenizer.json differs from llama.cpp "
                         f"on {len(bad)} texts, first {bad[0]!r}")

        # (d) every other normalizer, pre-tokenizer, post-processor and
        # decoder the loader accepts, each in a trained tokenizer
        for kind in COMPONENT_KINDS:
            path = os.path.join(tmp, kind + ".json")
            hf = component_tokenizer(kind, calib_path, path)
            check(kind, path, hf, cli, tmp, eval_text, rng, eval_text)

    if failures:
        print(f"{failures} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
