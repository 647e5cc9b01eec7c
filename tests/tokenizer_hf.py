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
  llama3    Split(Llama 3 regex, Isolated) + ByteLevel(use_regex false),
            ignore_merges, <|begin_of_text|> template
  qwen2     NFC + Split(Qwen2 regex) + ByteLevel, no template
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
         "added: hello world [MASK]x  [MASK]  a <mask>  b Alice Alicea _Alice naïve <|eot_id|>\n")

# fragments for random strings (fuzzing encode against HF)
FRAGMENTS = (list("abcXYZ019 .,;!?'\"-_()\t\r") + [" ", "  ", "\r\n", "\u00a0", "\u3000", "é", "ü",
             "ß", "日", "本", "語", "🤖", "😀", "🇫", "\u200d", "Ж", "ع", "न", "्", "안", "'s", "'LL",
             "the", " the", "ing", "123456", "<s>", "</s>", "<unk>", "<|endoftext|>", "[MASK]",
             "<mask>", "Alice", "hello world", "▁", "<0x41>", "\x00", "\x1f",
             # combining marks, Indic vowel signs, Hangul jamo: NFC composes some pairs
             "\u0301", "\u0327", "\u0323", "\u05b8", "\u05bc", "e", "o", "A", "க", "\u0bbe",
             "\u0bc6", "\u1100", "\u1161", "\u11a8", "\u212b", "\u0958"])

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
        return [[int(x) for x in block.split()] for block in out.split("\n\n")[:-1]]

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


def check(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text, nfc_only=False):
    n_before = failures
    try:
        check_all(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text, nfc_only)
    except RuntimeError as e:
        fail(f"{name}: our tokenize_cli failed: {e}")
    print(f"{name}: {'ok' if failures == n_before else 'FAILED'}")


def check_all(name, tok_json, hf, cli, tmp, eval_text, rng, lines_text, nfc_only):
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
    if nfc_only:
        import unicodedata
        fuzz = [unicodedata.normalize("NFC", x) for x in fuzz]
        fuzz = [x for x in fuzz if not conservative_refusal(x)]
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


_composing_marks = None


def conservative_refusal(text):
    """The one case where our NFC check refuses text that is already NFC (it
    has no decomposition tables): a composing mark whose class is lower than
    the mark that ends the decomposition of the starter before it."""
    import unicodedata
    global _composing_marks
    if _composing_marks is None:
        _composing_marks = set()
        for c in range(0x30000):
            d = unicodedata.decomposition(chr(c))
            if d and not d.startswith("<") and len(d.split()) == 2 \
                    and unicodedata.normalize("NFC", chr(c)) == chr(c):
                _composing_marks.add(chr(int(d.split()[1], 16)))
    starter_trail = 0
    for ch in text:
        ccc = unicodedata.combining(ch)
        if ccc == 0:
            starter_trail = unicodedata.combining(unicodedata.normalize("NFD", ch)[-1])
        elif ch in _composing_marks and starter_trail > ccc:
            return True
    return False


def train(tok, calib_path, special_tokens, alphabet=None, limit_alphabet=None):
    kw = dict(vocab_size=2000, special_tokens=special_tokens, show_progress=False)
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    if limit_alphabet is not None:
        kw["limit_alphabet"] = limit_alphabet
    tok.train([calib_path], trainers.BpeTrainer(**kw))


def sp_tokenizer(kind, calib_path, out_path):
    """Llama 2 layout: <unk> <s> </s> <0x00>..<0xFF> at ids 0..258 in the
    model vocabulary; only the first three are added tokens."""
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    llama2_decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                        decoders.Fuse(), decoders.Strip(" ", 1, 0)])
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
    tok.save(out_path)
    with open(out_path, encoding="utf-8") as f:
        data = json.load(f)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    return Tokenizer.from_file(out_path)


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
        for kind in ("sp", "sp_meta", "sp_split", "llama3", "qwen2"):
            path = os.path.join(tmp, kind + ".json")
            if kind.startswith("sp"):
                hf = sp_tokenizer(kind, calib_path, path)
            else:
                hf = bytelevel_tokenizer(kind, calib_path, path)
            check(kind, path, hf, cli, tmp, eval_text, rng, eval_text, nfc_only=(kind == "qwen2"))
            if kind == "sp":
                extra = hf.encode(EXTRA, add_special_tokens=False).ids
                if not any(3 <= i < 259 for i in extra):
                    fail("sp: the extra text never reached byte_fallback; the test is too weak")

        # Qwen2's NFC: we refuse exactly the strings NFC would change, with a
        # clear message, and match HF on the rest
        qwen = Ours(cli, os.path.join(tmp, "qwen2.json"), tmp)
        import unicodedata
        marks = ["a", "e", "A", "க", "\u0bbe", "\u0bc6", "\u0bd7", "\u1100", "\u1161", "\u11a8",
                 "\u0301", "\u0300", "\u0327", "\u0323", "\u031b", "\u05b8", "\u05bc", "\u05c1",
                 "\u212b", "\u0958", "\u093c", "\u0928", "é", "\uac00", " "]
        wrong = []
        for _ in range(400):
            text = "".join(rng.choice(marks) for _ in range(rng.randrange(1, 6)))
            want_refusal = unicodedata.normalize("NFC", text) != text
            try:
                ids = qwen.encode(text)
                if want_refusal:
                    wrong.append(f"{ascii(text)} accepted, NFC would change it")
                elif ids != hf.encode(text, add_special_tokens=False).ids:
                    wrong.append(f"{text!r}: ids differ from HF")
            except RuntimeError as e:
                if not want_refusal and not conservative_refusal(text):
                    wrong.append(f"{ascii(text)} (already NFC) refused: {e}")
                elif "NFC" not in str(e):
                    wrong.append(f"{text!r}: refusal does not mention NFC: {e}")
        if wrong:
            fail(f"qwen2 NFC check: {len(wrong)} of 400 wrong, first: {wrong[0]}")
        try:
            qwen.encode("cafe\u0301")
            fail("qwen2: decomposed 'cafe\\u0301' should be refused (NFC would compose it)")
        except RuntimeError as e:
            if "NFC" not in str(e):
                fail(f"qwen2: refusal does not mention NFC: {e}")

    if failures:
        print(f"{failures} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
