#!/usr/bin/env python3
"""scripts/make_family_fixtures.py: tiny random-weight models of the model
families gptqd runs beside Llama, made and run by transformers, for the test
suite to compare gptqd's forward with (tests/test_families.c).

Run inside the virtualenv scripts/interop-check installs (torch,
transformers): ~/.cache/gptqd/interop/venv/bin/python
scripts/make_family_fixtures.py. Writes tests/data/families/<family>/:
config.json and model.safetensors (transformers' save_pretrained, weights
in F16), the bundled tiny-llama's tokenizer (its vocabulary of 4096 is the
models'; so that gptqd serves, quantizes and evaluates them, and
scripts/interop-check takes them through transformers), and reference.json:
{"ids": [...], "vocab": V, "transformers": its version, "torch": ...} with
reference.f32, every position's logits of the ids ([len(ids), V] float32
little-endian), from a float32 forward in transformers of the F16 weights,
and reference_steps.f32, the same ids fed one at a time through its cache;
`--greedy [NAME ...]` adds to reference.json transformers' greedy
continuation of the first 8 ids ("greedy": ids and top-two margins).
`--greedy [NAME ...]` adds to reference.json transformers' greedy
continuation of the first 8 ids ("greedy": ids and top-two margins).
Deterministic (seeded)."""
import json
import os
import shutil
import sys

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "families")
TOKENIZER = os.path.join(HERE, "..", "models", "tiny-llama")


def qwen3():
    # head_dim 32 is not hidden / heads (16): the config's explicit head_dim
    # is what sizes q/k/v and the per-head q/k norms.
    cfg = transformers.Qwen3Config(
        vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        attention_bias=False, bos_token_id=4095, eos_token_id=4095)
    return cfg, transformers.Qwen3ForCausalLM


def phi3():
    # Phi-3 stores q/k/v as one self_attn.qkv_proj ([q; k; v] rows) and
    # gate/up as one mlp.gate_up_proj ([gate; up]); every part's rows a
    # multiple of 32, so even 3-bit zero points split on word boundaries.
    cfg = transformers.Phi3Config(
        vocab_size=4096, hidden_size=128, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        original_max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, sliding_window=None, bos_token_id=4095, eos_token_id=4095,
        pad_token_id=4095)
    return cfg, transformers.Phi3ForCausalLM


def phi3_longrope():
    # Phi-3 128k / Phi-3.5's RoPE: per-frequency short and long factors; an
    # original context of 16 so that the reference's 24 ids take the long
    # factors (the whole sequence) and a token-by-token run switches at 16
    cfg, cls = phi3()
    g = torch.Generator().manual_seed(7)
    half = cfg.hidden_size // cfg.num_attention_heads // 2
    short = (1 + 0.2 * torch.rand(half, generator=g)).tolist()
    long = (1 + 8 * torch.rand(half, generator=g)).tolist()
    cfg.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0,
                           "partial_rotary_factor": 1.0, "short_factor": short,
                           "long_factor": long, "original_max_position_embeddings": 16}
    cfg.original_max_position_embeddings = 16
    return cfg, cls


def opt():
    # The GPTQ paper's family: learned positions (offset 2), pre-LN
    # LayerNorms with biases, relu(fc1) -> fc2, biases on every linear, the
    # output matrix tied to the embedding; files under model.decoder.*
    cfg = transformers.OPTConfig(
        vocab_size=4096, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=64,
        do_layer_norm_before=True, activation_function="relu", bos_token_id=4095,
        eos_token_id=4095, pad_token_id=4095)
    return cfg, transformers.OPTForCausalLM


def opt_postln():
    # opt-350m's layout: norms after the residual adds, no final norm, and
    # a token embedding (tied to the output) of 32 taken to the model's 64
    # by project_in and back by project_out
    cfg, cls = opt()
    cfg.do_layer_norm_before = False
    cfg.word_embed_proj_dim = 32
    return cfg, cls


def bloom():
    # The paper's other family: ALiBi (6 heads: the slopes of a head count
    # that is not a power of two), q/k/v fused per head in
    # self_attention.query_key_value, a LayerNorm after the embedding,
    # GELU (tanh) MLP, biases everywhere; files under transformer.*
    cfg = transformers.BloomConfig(
        vocab_size=4096, hidden_size=192, n_layer=2, n_head=6, layer_norm_epsilon=1e-5,
        bos_token_id=4095, eos_token_id=4095, pad_token_id=4095)
    return cfg, transformers.BloomForCausalLM


def gemma2():
    # (1 + w) norms, two more per layer; embedding times sqrt(64) = 8; GELU
    # gate; scores scaled by query_pre_attn_scalar (24, not head_dim) and
    # soft-capped at 5, logits at 2 (small enough to matter on random
    # weights, whose logits stay below 2); a window of 8 on layers 0 and 2
    # (the reference's 24 ids pass it), layer 1 full
    cfg = transformers.Gemma2Config(
        vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        rms_norm_eps=1e-6, query_pre_attn_scalar=24, sliding_window=8,
        attn_logit_softcapping=5.0, final_logit_softcapping=2.0, bos_token_id=4095,
        eos_token_id=4095, pad_token_id=4095)
    cfg._attn_implementation = "eager"
    return cfg, transformers.Gemma2ForCausalLM


def gemma3():
    # Gemma 2's pieces without the caps, plus (1 + w) q/k norms and two
    # RoPEs: layers 0, 1 slide (window 8) with base 10000, layer 2 is full
    # with base 1e6 and linear scaling 4 (sliding_window_pattern 3)
    cfg = transformers.Gemma3TextConfig(
        vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
        rms_norm_eps=1e-6, query_pre_attn_scalar=24, sliding_window=8,
        sliding_window_pattern=3, rope_scaling={"rope_type": "linear", "factor": 4.0},
        bos_token_id=4095, eos_token_id=4095, pad_token_id=4095)
    cfg._attn_implementation = "eager"
    return cfg, transformers.Gemma3ForCausalLM


def make(name, build):
    torch.manual_seed(1234)
    cfg, cls = build()
    model = cls(cfg).float().eval()
    with torch.no_grad():  # norms away from 1, so that a missing norm shows
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1 + 0.5 * torch.randn_like(p))
            elif n.endswith(".bias"):  # initialized to zero: a missing bias would not show
                p.copy_(0.1 * torch.randn_like(p))
            p.copy_(p.half().float())  # the F16 file's values
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(99)
    ids = torch.randint(3, cfg.vocab_size, (1, 24), generator=g)
    with torch.no_grad():  # before .half(), which would round the RoPE buffers too
        logits = model(ids).logits[0].float()
        # token by token through the cache: what a generation sees (a RoPE
        # that changes with the length, like longrope, makes it differ)
        cache, steps = transformers.DynamicCache(config=cfg), []
        for t in range(ids.shape[1]):
            step = model(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            steps.append(step.logits[0, -1].float())
        steps = torch.stack(steps)
    model.half().save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER, f), os.path.join(out, f))
    logits.numpy().astype("<f4").tofile(os.path.join(out, "reference.f32"))
    steps.numpy().astype("<f4").tofile(os.path.join(out, "reference_steps.f32"))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"ids": ids[0].tolist(), "vocab": cfg.vocab_size,
                   "transformers": transformers.__version__, "torch": torch.__version__}, f)
    for extra in ("generation_config.json",):
        p = os.path.join(out, extra)
        if os.path.exists(p):
            os.remove(p)
    print(name, "->", out, "logits", tuple(logits.shape))


def greedy(name, steps=16, prompt=8):
    """reference.json's "greedy": transformers' greedy continuation (steps
    ids, and each step's top-two logit margin) of the first `prompt`
    reference ids, by generate() on the saved F16 weights in float32 -- the
    weights reference.f32 was computed from. Only adds the key."""
    out = os.path.join(OUT, name)
    path = os.path.join(out, "reference.json")
    ref = json.load(open(path))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([ref["ids"][:prompt]])
    with torch.no_grad():
        g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps,
                           min_new_tokens=steps, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, pad_token_id=cfg_pad(model))
    new = g.sequences[0, prompt:].tolist()
    margins = [float(t[0].topk(2).values[0] - t[0].topk(2).values[1]) for t in g.scores]
    ref["greedy"] = {"prompt": prompt, "ids": new, "margins": margins}
    with open(path, "w") as f:
        json.dump(ref, f)
    print(name, "greedy", new[:6], "min margin %.2e" % min(margins))


def cfg_pad(model):
    p = model.config.pad_token_id
    return p if p is not None else model.config.eos_token_id


if __name__ == "__main__":
    if sys.argv[1:2] == ["--greedy"]:
        for name in sys.argv[2:] or sorted(os.listdir(OUT)):
            greedy(name)
        sys.exit(0)
    families = {"qwen3": qwen3, "phi3": phi3, "phi3-longrope": phi3_longrope, "opt": opt,
                "opt-postln": opt_postln,
                "bloom": bloom, "gemma2": gemma2, "gemma3": gemma3}
    for name in sys.argv[1:] or families:
        make(name, families[name])
