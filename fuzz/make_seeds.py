#!/usr/bin/env python3
"""Fills fuzz/corpus/seeds*/ with seed inputs for the fuzz targets (python3 stdlib only).

    cd fuzz && python3 make_seeds.py

corpus/seeds/ (gguf_header, gguf_model):
  * every file of tests/bad_inputs/ (small models cut from the real llama-2 fixture and
    hand-built malformed headers), regenerated first by its make.py, except the known
    bugs (MANIFEST status xfail), which would stop the fuzzer at once;
  * a Qwen2-shaped variant of the small model (biases), for the loader's other branch;
  * each real GGUF found (the llama-2 fixture, llama.cpp's vocab files and the Qwen2.5
    Q4_K_M model of the fetched test data): a "shrunk" valid copy (every array cut to 8
    elements, tensors dropped unless the file is small) and truncated copies (first 1 KiB
    and 8 KiB), so the fuzzer starts from the real key names, types and layouts.
corpus/seeds_tokenizer/: for each vocabulary the tokenizer target loads (the supported
  ggml-vocab-*.gguf files, in its order: byte 0), llama.cpp's reference inputs
  (`.inp` files), a chat turn with special tokens and lines of the fetched texts, under
  several flag bytes, and token-id inputs.
corpus/seeds_chat_template/: every Jinja chat template found (llama.cpp's
  models/templates/, tests/data/templates/, the GGUF files' tokenizer.chat_template) with
  a four-turn conversation (those of at most 4 KiB: the runs use -max_len=4096), and each
  built-in template.
corpus/seeds_safetensors/: the fixture's config.json with the header of its
  model.safetensors, and small complete checkpoints (LLaMA, CLEX, Qwen2 with biases and
  tied embeddings, F16/BF16 weights, llama3/yarn/linear RoPE scaling, an I8 tensor).
Deterministic; the folders are git-ignored (regenerate them, do not commit them).
"""

import glob
import json
import mmap
import random
import struct
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "bad_inputs"))
import make  # noqa: E402  (tests/bad_inputs/make.py)
from make import ARR, KV, T, Gguf, Reader, T_F32, f32s  # noqa: E402

KEEP = 8  # array elements kept in a shrunk copy


def real_files():
    test_data = os.environ.get("CLEX_TEST_DATA") or os.path.expanduser("~/.cache/clex-test-data")
    files = [make.fixture_path()]
    files += sorted(glob.glob(os.path.join(test_data, "vocab", "*.gguf")))
    files += sorted(glob.glob(os.path.join(test_data, "models", "*.gguf")))
    return [f for f in files if os.path.exists(f)]


def shrink(path):
    """A valid GGUF with the file's metadata, arrays cut to KEEP elements."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as b:
        r = Reader(b)
        assert r.take(4) == b"GGUF"
        version, n_t, n_kv = r.u32(), r.u64(), r.u64()
        kvs = []
        for _ in range(n_kv):
            key = r.str()
            ty = r.u32()
            if ty == ARR:  # skip the tail of long arrays without building it
                et, n = r.u32(), r.u64()
                vals = [r.value(et) for _ in range(min(n, KEEP))]
                for _ in range(n - len(vals)):
                    r.value(et)
                kvs.append(KV(key, ARR, (et, vals)))
            else:
                kvs.append(KV(key, ty, r.value(ty)))
        infos = []
        for _ in range(n_t):
            name = r.str()
            dims = [r.u64() for _ in range(r.u32())]
            infos.append((name, dims, r.u32(), r.u64()))
        align = next((k.value for k in kvs if k.key == b"general.alignment"), 32)
        data = -(-r.p // align) * align
        tensors = []
        if len(b) - data <= 64 * 1024:  # small enough to keep the tensors as they are
            ends = sorted(o for *_, o in infos) + [len(b) - data]
            for name, dims, ty, off in infos:
                end = min((e for e in ends if e > off), default=off)
                t = T(name, dims, ty, bytes(b[data + off:data + end]))
                t.offset = off
                tensors.append(t)
        g = Gguf(kvs, tensors, version=version, alignment=align)
        return g.build()[0], bytes(b[:1024]), bytes(b[:8192])


def qwen2_variant():
    g = make.small_llama(make.read_fixture(make.fixture_path()))
    for k in g.kvs:
        if k.key.startswith("llama."):
            k.key = "qwen2." + k.key[len("llama."):]
    g.set("general.architecture", make.STR, "qwen2")
    for n in ["q", "k", "v"]:
        g.tensors.append(T(f"blk.0.attn_{n}.bias", [8], T_F32, f32s([0.01 * i for i in range(8)])))
    return g.build()[0]


def test_data():
    return os.environ.get("CLEX_TEST_DATA") or os.path.expanduser("~/.cache/clex-test-data")


def gguf_strings(path, keys):
    """The string values of `keys` in a GGUF file (arrays skipped)."""
    out = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as b:
        r = Reader(b)
        r.take(4)
        _version, _n_t, n_kv = r.u32(), r.u64(), r.u64()
        for _ in range(n_kv):
            key = r.str()
            ty = r.u32()
            if ty == ARR:
                et, n = r.u32(), r.u64()
                for _ in range(n):
                    r.value(et)
            else:
                v = r.value(ty)
                if key.decode() in keys:
                    out[key.decode()] = v
    return out


def write_seeds(out, seeds):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, data in seeds:
        with open(os.path.join(out, name), "wb") as fh:
            fh.write(data)
    total = sum(len(d) for _, d in seeds)
    print(f"{len(seeds)} seeds, {total} bytes in {out}")


SUPPORTED_VOCABS = {b"llama", b"gpt2", b"gemma4"}


def tokenizer_seeds():
    files = sorted(glob.glob(os.path.join(test_data(), "vocab", "*.gguf")))
    vocabs = [f for f in files if gguf_strings(f, {"tokenizer.ggml.model"}).get("tokenizer.ggml.model") in SUPPORTED_VOCABS]
    texts = []
    for t in sorted(glob.glob(os.path.join(test_data(), "texts", "*.txt"))):
        with open(t, encoding="utf-8", errors="replace") as fh:
            lines = [l for l in fh.read(200_000).splitlines() if l.strip()]
        texts += lines[100:104]
    chat = ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi <s> [INST] "
            "<|begin_of_text|><|eot_id|> <mask> <unk></s><|endoftext|><|im_end|>\n")
    seeds = []
    rng = random.Random(7)
    for i, f in enumerate(vocabs):
        stem = os.path.basename(f)[len("ggml-vocab-"):-len(".gguf")]
        cases = []
        inp = f + ".inp"
        if os.path.exists(inp):
            with open(inp, encoding="utf-8", errors="replace") as fh:
                cases = fh.read().split("\n__ggml_vocab_test__\n")
        cases = [c for c in cases if len(c.encode()) <= 1000] + texts + [chat]
        for j, c in enumerate(cases):
            for flags in ([0, 3] if j % 4 == 0 else [0]):
                seeds.append((f"{stem}-{j:03d}-{flags}", bytes([i, flags]) + c.encode()))
        ids = b"".join(struct.pack("<I", rng.randrange(0, 300_000)) for _ in range(64))
        seeds.append((f"{stem}-ids", bytes([i, 4]) + ids))
        seeds.append((f"{stem}-ids-special", bytes([i, 6]) + ids))
    return seeds


CONVERSATION = [("system", "You are a helpful assistant."), ("user", "Hello! What is 2+2?"),
                ("assistant", "2 + 2 = 4."), ("user", "And in Rust?  ")]


def chat_seeds():
    conv = "".join(f"\0{r}\x01{c}" for r, c in CONVERSATION).encode()
    templates = []
    for d in [os.path.join(test_data(), "llama.cpp", "models", "templates"), os.path.join(ROOT, "tests", "data", "templates")]:
        for t in sorted(glob.glob(os.path.join(d, "*.jinja"))):
            with open(t, "rb") as fh:
                templates.append((os.path.basename(t)[:-len(".jinja")], fh.read()))
    for path in real_files() + sorted(glob.glob(os.path.join(ROOT, "models", "*.gguf"))):
        t = gguf_strings(path, {"tokenizer.chat_template"}).get("tokenizer.chat_template")
        if t:
            templates.append((os.path.basename(path)[:-len(".gguf")], t))
    seeds = []
    for name, t in templates:
        if len(t) + len(conv) > 4096:  # -max_len of the runs: compile time grows with size
            continue
        seeds.append((f"{name}-gen", b"\x01" + t + conv))
        seeds.append((f"{name}-nogen", b"\x00" + t + conv[:len(conv) // 2]))
    for k in range(16):  # built-ins (byte 0 bit 1), by number
        seeds.append((f"builtin-{k}", bytes([2 | (k << 2) | (k & 1)]) + conv))
    return seeds


# ---------------------------------------------------------------- safetensors

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] → a safetensors file."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def tiny_checkpoint(rng, arch="llama", clex=False, tied=False, dtype="F32", rope=None, extra=None):
    V, H, NH, NKV, HD, FF, L = 16, 8, 2, 1, 4, 12, 2
    cfg = {"architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"],
           "vocab_size": V, "hidden_size": H, "intermediate_size": FF, "num_hidden_layers": L,
           "num_attention_heads": NH, "num_key_value_heads": NKV, "head_dim": HD, "hidden_act": "silu",
           "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2}
    if clex:
        cfg["rope_scaling"] = {"type": "clex", "max_factor": 4, "param_factor": 1, "act": "tanh", "time_dt": 0.01}
        cfg["log_scale"] = True
    if rope:
        cfg["rope_scaling"] = rope

    def raw(shape, dt):
        n = 1
        for d in shape:
            n *= d
        vals = [rng.uniform(-0.05, 0.05) for _ in range(n)]
        if dt == "F32":
            return struct.pack(f"<{n}f", *vals)
        if dt == "F16":
            return struct.pack(f"<{n}e", *vals)
        if dt == "BF16":
            return b"".join(struct.pack("<f", v)[2:] for v in vals)
        return bytes(rng.randrange(256) for _ in range(n))  # I8 etc.

    ts = []

    def add(name, shape, dt=dtype):
        ts.append((name, dt, shape, raw(shape, dt)))

    add("model.embed_tokens.weight", [V, H])
    for l in range(L):
        p = f"model.layers.{l}."
        add(p + "input_layernorm.weight", [H], "F32")
        add(p + "self_attn.q_proj.weight", [NH * HD, H])
        add(p + "self_attn.k_proj.weight", [NKV * HD, H])
        add(p + "self_attn.v_proj.weight", [NKV * HD, H])
        if arch == "qwen2":
            add(p + "self_attn.q_proj.bias", [NH * HD], "F32")
            add(p + "self_attn.k_proj.bias", [NKV * HD], "F32")
            add(p + "self_attn.v_proj.bias", [NKV * HD], "F32")
        add(p + "self_attn.o_proj.weight", [H, NH * HD])
        add(p + "post_attention_layernorm.weight", [H], "F32")
        add(p + "mlp.gate_proj.weight", [FF, H])
        add(p + "mlp.up_proj.weight", [FF, H])
        add(p + "mlp.down_proj.weight", [H, FF])
        add(p + "self_attn.rotary_emb.inv_freq", [HD // 2], "F32")
    add("model.norm.weight", [H], "F32")
    if not tied:
        add("lm_head.weight", [V, H])
    if clex:
        add("model.clex_layer.proj_func.ode_up_proj", [HD // 2, HD], "F32")
        add("model.clex_layer.proj_func.ode_down_proj", [HD, HD // 2], "F32")
        ts.append(("model.clex_layer.inv_freq", "F32", [HD // 2],
                   struct.pack("<2f", 1.0, 0.01)))
    if extra:
        add(*extra)
    return json.dumps(cfg, indent=2).encode(), safetensors(ts, {"format": "pt"})


def st_seed(cfg, st):
    return struct.pack("<H", len(cfg)) + cfg + st


def safetensors_seeds():
    rng = random.Random(11)
    seeds = []
    hf = os.path.join(os.environ.get("CLEX_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures"), "clex-tiny", "hf")
    if os.path.exists(os.path.join(hf, "config.json")):
        with open(os.path.join(hf, "config.json"), "rb") as fh:
            cfg = fh.read()
        with open(os.path.join(hf, "model.safetensors"), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            head = struct.pack("<Q", n) + fh.read(n)
        seeds.append(("fixture-header", st_seed(cfg, head)))
        seeds.append(("fixture-header-64", st_seed(cfg, head + bytes(64))))
    variants = {
        "llama": {},
        "clex": {"clex": True},
        "qwen2-tied": {"arch": "qwen2", "tied": True},
        "f16": {"dtype": "F16"},
        "bf16-clex": {"dtype": "BF16", "clex": True},
        "llama3": {"rope": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 32}},
        "yarn": {"rope": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32, "beta_fast": 32.0}},
        "linear": {"rope": {"type": "linear", "factor": 2.0}},
        "i8": {"extra": ("model.layers.0.extra.weight", [4], "I8")},
    }
    for name, kw in variants.items():
        cfg, st = tiny_checkpoint(rng, **kw)
        seeds.append((name, st_seed(cfg, st)))
    return seeds


def main():
    write_seeds(os.path.join(HERE, "corpus", "seeds_tokenizer"), tokenizer_seeds())
    write_seeds(os.path.join(HERE, "corpus", "seeds_chat_template"), chat_seeds())
    write_seeds(os.path.join(HERE, "corpus", "seeds_safetensors"), safetensors_seeds())
    out = os.path.join(HERE, "corpus", "seeds")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    argv, sys.argv = sys.argv, ["make.py"]
    make.main()  # regenerate tests/bad_inputs
    sys.argv = argv
    bad = os.path.join(ROOT, "tests", "bad_inputs")
    # Known bugs (status xfail) would stop the fuzzer at once: leave them out.
    rows = [l.split("\t") for l in open(os.path.join(bad, "MANIFEST.tsv")).read().splitlines()[1:]]
    known = {r[0] for r in rows if r[4] == "xfail"}
    n = 0
    for f in sorted(os.listdir(bad)):
        if f.endswith(".gguf") and f not in known:
            shutil.copy(os.path.join(bad, f), os.path.join(out, f))
            n += 1
    with open(os.path.join(out, "ok_small_qwen2.gguf"), "wb") as fh:
        fh.write(qwen2_variant())
    n += 1
    for path in real_files():
        stem = os.path.basename(path)[:-len(".gguf")]
        shrunk, head1k, head8k = shrink(path)
        for suffix, data in [("shrunk", shrunk), ("head1k", head1k), ("head8k", head8k)]:
            with open(os.path.join(out, f"{stem}-{suffix}.gguf"), "wb") as fh:
                fh.write(data)
            n += 1
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{n} seeds, {total} bytes in {out}")


if __name__ == "__main__":
    main()
