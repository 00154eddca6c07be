#!/usr/bin/env python3
"""Writes the malformed GGUF inputs of tests/bad_inputs/ and their MANIFEST.tsv.

    python3 tests/bad_inputs/make.py            # fixture from ../shared/fixtures or $CLEX_FIXTURES
    python3 tests/bad_inputs/make.py --check    # exit 1 if the committed files differ

Deterministic, python3 standard library only. Every model-shaped file is derived from
the real llama.cpp-converted fixture llama-2-tiny-random.gguf: its metadata and its
layer weights are copied, its 32,000-token vocabulary and the two [8, 32000]
embedding matrices are cut to the first VOCAB (16) tokens, so each file is a few KB. The
header-level cases are small hand-built GGUFs (mostly without tensors).

MANIFEST.tsv columns: file, what is wrong, expected class, message substring, status.
The class is the `GgufError` variant that `GgufFile::open` returns, or, for files the
reader accepts, the outcome of `Model::load`: `Model`, `Clex`, `Tokenizer`, a
`GgufError` variant that `Model::load` returns wrapped in `Error::Gguf` (typed getters),
or `Ok` for the control files. status is `ok`, or `xfail` for a known bug that tests/bad_inputs.rs
reports without failing (see docs/RELIABILITY.md).
"""

import hashlib
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# GGUF value type codes.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# ggml type codes used here.
T_F32, T_F16, T_Q4_0 = 0, 1, 2

VOCAB = 16  # tokens kept from the fixture's vocabulary


def fixture_path():
    d = os.environ.get("CLEX_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures")
    return os.path.join(d, "llama-2-tiny-random.gguf")


# ---------------------------------------------------------------- encoding


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(s):
    if isinstance(s, str):
        s = s.encode()
    return u64(len(s)) + s


SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          U64: "<Q", I64: "<q", F64: "<d"}


def enc(ty, v):
    """Encodes value v of GGUF type ty (arrays: v = (elem_type, [values]))."""
    if ty in SCALAR:
        return struct.pack(SCALAR[ty], v)
    if ty == BOOL:
        return bytes([v])  # an int, so bad bytes can be written
    if ty == STR:
        return gstr(v)
    if ty == ARR:
        et, vals = v
        return u32(et) + u64(len(vals)) + b"".join(enc(et, x) for x in vals)
    raise ValueError(ty)


class KV:
    """One metadata entry; `raw` (type code + value bytes) overrides ty/value."""

    def __init__(self, key, ty=None, value=None, raw=None):
        self.key, self.ty, self.value, self.raw = key, ty, value, raw

    def encode(self):
        key = self.key.encode() if isinstance(self.key, str) else self.key
        body = self.raw if self.raw is not None else u32(self.ty) + enc(self.ty, self.value)
        return gstr(key) + body


class T:
    """One tensor: ggml dims (fastest first), ggml type, data bytes."""

    def __init__(self, name, dims, ty, data):
        self.name, self.dims, self.ty, self.data = name, list(dims), ty, data
        self.offset = None  # assigned by layout unless forced
        self.n_dims = None  # override of the n_dims field
        self.phantom = False  # listed in the header, data not written


class Gguf:
    def __init__(self, kvs, tensors, version=3, alignment=32):
        self.kvs, self.tensors = kvs, tensors
        self.magic, self.version, self.alignment = b"GGUF", version, alignment
        self.n_tensors = self.n_kv = None  # overrides of the counts

    def kv(self, key):
        return next(k for k in self.kvs if k.key == key)

    def set(self, key, ty, value):
        for k in self.kvs:
            if k.key == key:
                k.ty, k.value, k.raw = ty, value, None
                return
        self.kvs.append(KV(key, ty, value))

    def drop(self, key):
        self.kvs = [k for k in self.kvs if k.key != key]

    def tensor(self, name):
        return next(t for t in self.tensors if t.name == name)

    def layout(self):
        """Gives every tensor without a forced offset the next aligned slot."""
        off = 0
        for t in self.tensors:
            if t.phantom:
                continue
            if t.offset is None:
                t.offset = off
            off = max(off, t.offset + len(t.data))
            off = -(-off // self.alignment) * self.alignment

    def build(self):
        """Returns (bytes, marks): marks names the offsets of the file's sections."""
        self.layout()
        marks = {}
        out = bytearray(self.magic)
        marks["version"] = len(out)
        out += u32(self.version)
        marks["tensor_count"] = len(out)
        out += u64(len(self.tensors) if self.n_tensors is None else self.n_tensors)
        marks["kv_count"] = len(out)
        out += u64(len(self.kvs) if self.n_kv is None else self.n_kv)
        for i, kv in enumerate(self.kvs):
            marks[("kv", kv.key)] = len(out)
            out += kv.encode()
        for t in self.tensors:
            marks[("tensor", t.name)] = len(out)
            out += gstr(t.name)
            out += u32(len(t.dims) if t.n_dims is None else t.n_dims)
            out += b"".join(u64(d) for d in t.dims)
            out += u32(t.ty)
            out += u64(t.offset)
        marks["header_end"] = len(out)
        # (Without tensors there is no data section, and no padding.)
        data_start = -(-len(out) // self.alignment) * self.alignment if self.tensors else len(out)
        marks["data"] = data_start
        out += bytes(data_start - len(out))
        real = [t for t in self.tensors if not t.phantom]
        end = max((t.offset + len(t.data) for t in real), default=0)
        data = bytearray(end)
        for t in sorted(real, key=lambda t: t.offset):
            data[t.offset:t.offset + len(t.data)] = t.data
        out += data
        for t in self.tensors:
            marks[("data", t.name)] = data_start + t.offset
        return bytes(out), marks


# ---------------------------------------------------------------- the fixture


class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        s = self.b[self.p:self.p + n]
        assert len(s) == n, "fixture truncated"
        self.p += n
        return s

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def str(self):
        return self.take(self.u64())

    def value(self, ty):
        if ty in SCALAR:
            return struct.unpack(SCALAR[ty], self.take(struct.calcsize(SCALAR[ty])))[0]
        if ty == BOOL:
            return self.take(1)[0]
        if ty == STR:
            return self.str()
        if ty == ARR:
            et, n = self.u32(), self.u64()
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(ty)


def read_fixture(path):
    b = open(path, "rb").read()
    r = Reader(b)
    assert r.take(4) == b"GGUF"
    version, n_t, n_kv = r.u32(), r.u64(), r.u64()
    assert version == 3
    kvs = []
    for _ in range(n_kv):
        key = r.str().decode()
        ty = r.u32()
        kvs.append(KV(key, ty, r.value(ty)))
    infos = []
    for _ in range(n_t):
        name = r.str().decode()
        dims = [r.u64() for _ in range(r.u32())]
        infos.append((name, dims, r.u32(), r.u64()))
    align = next((k.value for k in kvs if k.key == "general.alignment"), 32)
    data = -(-r.p // align) * align
    size = {T_F32: 4, T_F16: 2}
    tensors = {}
    for name, dims, ty, off in infos:
        n = math.prod(dims) * size[ty]
        tensors[name] = T(name, dims, ty, b[data + off:data + off + n])
    return kvs, [n for n, *_ in infos], tensors


def small_llama(fixture):
    """The fixture with its vocabulary cut to VOCAB tokens: a valid model of ~5 KB."""
    kvs, order, tensors = fixture
    out = []
    for k in kvs:
        if k.ty == ARR:
            et, vals = k.value
            out.append(KV(k.key, ARR, (et, vals[:VOCAB])))
        else:
            out.append(KV(k.key, k.ty, k.value))
    ts = []
    for name in order:
        t = tensors[name]
        if t.dims == [8, 32000]:  # token_embd, output: keep the first VOCAB rows
            t = T(name, [8, VOCAB], t.ty, t.data[:8 * 2 * VOCAB])
        ts.append(T(name, t.dims, t.ty, t.data))
    return Gguf(out, ts)


def f32s(vals):
    return b"".join(struct.pack("<f", v) for v in vals)


def small_clex(fixture):
    """small_llama plus CLEX metadata and ODE tensors (docs/gguf-clex.md): d = 4, p = 1."""
    g = small_llama(fixture)
    d, p = 4, 1
    d2, m = d // 2, p * d
    g.set("llama.rope.scaling.type", STR, "clex")
    g.set("llama.rope.scaling.original_context_length", U32, 64)
    g.set("llama.rope.clex.max_factor", U32, 4)
    g.set("llama.rope.clex.param_factor", U32, p)
    g.set("llama.rope.clex.act", STR, "tanh")
    g.set("llama.rope.clex.time_dt", F32, 0.01)
    g.set("llama.rope.clex.log_scale", BOOL, 0)
    g.set("llama.context_length", U32, 64 * 4)
    up = [0.05 * math.sin(i + 1) for i in range(m * d2)]
    down = [0.05 * math.cos(i + 1) for i in range(d2 * m)]
    inv = [10000.0 ** (-2 * j / d) for j in range(d2)]
    g.tensors += [T("clex.ode_up_proj", [m, d2], T_F32, f32s(up)),
                  T("clex.ode_down_proj", [d2, m], T_F32, f32s(down)),
                  T("clex.inv_freq", [d2], T_F32, f32s(inv))]
    return g


def header(kvs=(), tensors=(), **kw):
    """A small hand-built GGUF."""
    g = Gguf(list(kvs), list(tensors), **kw)
    return g


def arch_kv():
    return [KV("general.architecture", STR, "llama"), KV("general.name", STR, "bad input")]


# ---------------------------------------------------------------- the cases

CASES = []  # (file, bytes, what, class, substring, status)


def case(file, data, what, cls, sub, status="ok"):
    assert "\t" not in what + sub and "\n" not in what + sub
    CASES.append((file, data, what, cls, sub, status))


def make_cases(fx):
    base_g = small_llama(fx)
    base, mk = base_g.build()
    clex_g = small_clex(fx)
    clex, cmk = clex_g.build()
    n_t = len(base_g.tensors)

    def variant(f, clex_based=False):
        g = small_clex(fx) if clex_based else small_llama(fx)
        f(g)
        return g.build()[0]

    # --- controls: the reader and the loader accept these
    case("ok_small_llama.gguf", base, f"control: the fixture cut to {VOCAB} tokens", "Ok", "")
    case("ok_small_llama_v2.gguf", variant(lambda g: setattr(g, "version", 2)),
         "control: the same as GGUF v2", "Ok", "")
    case("ok_small_clex.gguf", clex, "control: CLEX model, d=4 p=1 T=4", "Ok", "")

    # --- truncation at every section boundary (prefixes of ok_small_llama.gguf)
    def trunc(name, n, what, cls, sub):
        case(f"trunc_{name}.gguf", base[:n], f"truncated at byte {n}: {what}", cls, sub)

    trunc("empty", 0, "empty file", "Truncated", "magic needs 4 bytes at offset 0, file has 0")
    trunc("in_magic", 2, "inside the magic", "Truncated", "magic needs 4 bytes")
    trunc("in_version", mk["version"] + 2, "inside the version", "Truncated", "version needs 4 bytes")
    trunc("in_tensor_count", mk["tensor_count"] + 3, "inside the tensor count", "Truncated", "tensor count needs 8")
    # (A prefix of the model would fail on the tensor count first: 12 infos cannot fit.)
    case("trunc_in_kv_count.gguf", header(arch_kv()).build()[0][:mk["kv_count"] + 7],
         "header without tensors truncated inside the metadata count", "Truncated", "metadata count needs 8 bytes")
    trunc("in_kv_count_model", mk["kv_count"] + 7, "inside the metadata count (12 tensors announced)",
          "CountTooLarge", f"tensor count = {n_t} cannot fit in the 7 bytes left")
    trunc("after_counts", mk["kv_count"] + 8, "right after the counts", "CountTooLarge",
          f"tensor count = {n_t} cannot fit in the 8 bytes left")
    # Keys far enough into the file that both counts still fit in the prefix.
    k = ("kv", "llama.attention.head_count_kv")
    idx = [kv.key for kv in base_g.kvs].index(k[1])
    trunc("in_key_length", mk[k] + 5, "inside a key's length", "Truncated",
          f"metadata key #{idx} (string length) needs 8 bytes")
    trunc("in_key", mk[k] + 8 + 10, "inside a key", "CountTooLarge",
          f"metadata key #{idx} (string length) = 29 cannot fit in the 10 bytes left")
    trunc("in_value_type", mk[k] + 8 + 29 + 1, "inside a value's type", "Truncated",
          'type of "llama.attention.head_count_kv" needs 4 bytes')
    trunc("in_value", mk[k] + 8 + 29 + 4 + 2, "inside a u32 value", "Truncated",
          "llama.attention.head_count_kv needs 4 bytes")
    k = ("kv", "tokenizer.ggml.tokens")
    trunc("in_array_header", mk[k] + 8 + 21 + 4 + 4 + 3, "inside a string array's length", "Truncated",
          "tokenizer.ggml.tokens (array length) needs 8 bytes")
    # The first token whose length prefix lies far enough into the array that the
    # array's length (VOCAB strings of at least 8 bytes) still fits in the prefix.
    p0 = p = mk[k] + 8 + 21 + 4 + 4 + 8
    toks = base_g.kv("tokenizer.ggml.tokens").value[1]
    i = 0
    while p - p0 < 8 * VOCAB:
        p += 8 + len(toks[i])
        i += 1
    trunc("in_string_array_len", p + 4, "inside a string array, in an element's length", "Truncated",
          "tokenizer.ggml.tokens (string length) needs 8 bytes")
    trunc("in_string_array", p + 8 + 2, "inside a string array, in an element", "CountTooLarge",
          f"tokenizer.ggml.tokens (string length) = {len(toks[i])} cannot fit in the 2 bytes left")
    k = ("kv", "tokenizer.ggml.scores")
    trunc("in_f32_array", mk[k] + 8 + 21 + 4 + 4 + 8 + 4 * 10 + 1, "inside an f32 array", "CountTooLarge",
          f"tokenizer.ggml.scores (array length) = {VOCAB} cannot fit in the 41 bytes left")
    t = ("tensor", "blk.0.attn_q.weight")
    trunc("in_tensor_name_len", mk[t] + 1, "inside a tensor name's length", "Truncated",
          "name of tensor #1 (string length) needs 8 bytes")
    trunc("in_tensor_name", mk[t] + 8 + 5, "inside a tensor name", "CountTooLarge",
          "name of tensor #1 (string length) = 19 cannot fit in the 5 bytes left")
    trunc("in_tensor_n_dims", mk[t] + 8 + 19 + 2, "inside a tensor's n_dims", "Truncated",
          'n_dims of tensor "blk.0.attn_q.weight" needs 4 bytes')
    trunc("in_tensor_dims", mk[t] + 8 + 19 + 4 + 8 + 3, "inside a tensor's second dimension", "Truncated",
          'dimension 1 of tensor "blk.0.attn_q.weight" needs 8 bytes')
    trunc("in_tensor_type", mk[t] + 8 + 19 + 4 + 16 + 1, "inside a tensor's type", "Truncated",
          'type of tensor "blk.0.attn_q.weight" needs 4 bytes')
    trunc("in_tensor_offset", mk[t] + 8 + 19 + 4 + 16 + 4 + 7, "inside a tensor's offset", "Truncated",
          'offset of tensor "blk.0.attn_q.weight" needs 8 bytes')
    trunc("at_header_end", mk["header_end"], "at the end of the header, before the padding", "Truncated",
          f'padding before the data section (alignment 32) needs {mk["data"] - mk["header_end"]} bytes')
    trunc("before_data", mk["data"], "after the padding, before any data", "Truncated",
          'data of tensor "token_embd.weight"')
    last = max(base_g.tensors, key=lambda t: t.offset)
    trunc("in_data", mk[("data", last.name)] + 17, "inside the last tensor's data", "Truncated",
          f'data of tensor "{last.name}"')
    trunc("one_short", len(base) - 1, "one byte short", "Truncated", f'data of tensor "{last.name}"')

    # --- magic and version
    g = header(arch_kv()); g.magic = b"GGML"
    case("bad_magic_ggml.gguf", g.build()[0], "magic GGML (the pre-GGUF format)", "BadMagic",
         "bad magic [47, 47, 4d, 4c]: not a GGUF file")
    g = header(arch_kv()); g.magic = b"FUGG"
    case("bad_magic_reversed.gguf", g.build()[0], "magic byte-reversed", "BadMagic", "not a GGUF file")
    for v, sub, what in [(1, "GGUF v1 is obsolete", "version 1"),
                         (4, "unsupported GGUF version 4 (supported: 2, 3)", "version 4"),
                         (0, "unsupported GGUF version 0", "version 0"),
                         (3 << 24, "version 50331648 (supported: 2, 3) (this looks like a big-endian file)",
                          "version 3 byte-swapped")]:
        g = header(arch_kv(), version=v)
        case(f"version_{v}.gguf", g.build()[0], what, "BadVersion", sub)

    # --- counts
    for name, attr, n in [("tensor_count_2p63", "n_tensors", 1 << 63),
                          ("tensor_count_max", "n_tensors", (1 << 64) - 1),
                          ("kv_count_2p63", "n_kv", 1 << 63),
                          ("kv_count_max", "n_kv", (1 << 64) - 1)]:
        g = header(arch_kv())
        setattr(g, attr, n)
        label = "tensor count" if attr == "n_tensors" else "metadata count"
        case(f"{name}.gguf", g.build()[0], f"{label} = {n}", "CountTooLarge", f"{label} = {n} cannot fit")
    g = header(arch_kv()); g.n_kv = 3
    case("kv_count_one_too_many.gguf", g.build()[0], "metadata count 3 for 2 entries", "Truncated",
         "metadata key #2 (string length) needs 8 bytes")
    g = header(arch_kv() + [KV("general.description", raw=u32(STR) + u64(1 << 63) + b"abc")])
    case("string_len_2p63.gguf", g.build()[0], "a string value's length = 2^63", "CountTooLarge",
         "general.description (string length) = 9223372036854775808 cannot fit")
    g = header([KV("general.architecture", STR, "llama")])
    raw = g.build()[0]
    raw = raw[:24] + u64(1 << 63) + raw[32:]
    case("key_len_2p63.gguf", raw, "a key's length = 2^63", "CountTooLarge",
         "metadata key #0 (string length) = 9223372036854775808 cannot fit")
    for et, name in [(U8, "u8"), (U64, "u64"), (STR, "string"), (ARR, "array")]:
        g = header(arch_kv() + [KV("x.big", raw=u32(ARR) + u32(et) + u64(1 << 62) + bytes(16))])
        case(f"array_len_2p62_{name}.gguf", g.build()[0], f"an array of {name} of length 2^62",
             "CountTooLarge", "x.big (array length) = 4611686018427387904 cannot fit")

    # --- values
    deep = b"".join(u32(ARR) + u64(1) for _ in range(100)) + u32(U8) + u64(0)
    g = header(arch_kv() + [KV("x.deep", raw=u32(ARR) + deep)])
    case("nested_arrays_100.gguf", g.build()[0], "arrays nested 100 deep", "TooDeep",
         "x.deep: arrays nested deeper than 8")
    deep = b"".join(u32(ARR) + u64(1) for _ in range(7)) + u32(U8) + u64(1) + b"\x07"
    g = header(arch_kv() + [KV("x.deep", raw=u32(ARR) + deep)])
    case("nested_arrays_8.gguf", g.build()[0], "arrays nested 8 deep (the limit; accepted), then no model",
         "Model", 'missing metadata key "llama.embedding_length"')
    g = header(arch_kv() + [KV("x.t", raw=u32(13) + bytes(8))])
    case("value_type_13.gguf", g.build()[0], "value type 13 (unknown)", "BadValueType",
         'metadata "x.t": invalid value type 13')
    g = header(arch_kv() + [KV("x.t", raw=u32(0xFFFFFFFF) + bytes(8))])
    case("value_type_max.gguf", g.build()[0], "value type 2^32-1", "BadValueType", "invalid value type 4294967295")
    g = header(arch_kv() + [KV("x.t", raw=u32(ARR) + u32(13) + u64(1) + bytes(8))])
    case("array_elem_type_13.gguf", g.build()[0], "array of type 13", "BadValueType",
         "x.t (array): invalid value type 13")
    g = header(arch_kv() + [KV(b"general.\xff\xfename", STR, "x")])
    case("key_not_utf8.gguf", g.build()[0], "key with bytes ff fe", "KeyNotUtf8",
         "metadata key #2 is not valid UTF-8")
    g = header(arch_kv() + [KV("general.name", STR, "again")])
    case("duplicate_key.gguf", g.build()[0], "general.name twice", "DuplicateKey",
         'duplicate metadata key "general.name"')
    g = header(arch_kv() + [KV("x.flag", BOOL, 2)])
    case("bool_byte_2.gguf", g.build()[0], "bool value byte 2", "BadKey",
         'metadata "x.flag": bool byte 2 is neither 0 nor 1')
    g = header(arch_kv() + [KV("x.flags", ARR, (BOOL, [1, 0, 255]))])
    case("bool_array_byte_255.gguf", g.build()[0], "bool array with byte 255", "BadKey",
         "bool byte 255 is neither 0 nor 1")
    g = header(arch_kv() + [KV("x.s", ARR, (STR, [b"ok", b"\xff\xfe bytes"]))])
    case("value_not_utf8.gguf", g.build()[0],
         "non-UTF-8 string value (accepted like llama.cpp, replaced), then no model",
         "Model", 'missing metadata key "llama.embedding_length"')

    # --- alignment
    for a, ty in [(0, U32), (3, U32), (48, U64)]:
        g = header(arch_kv() + [KV("general.alignment", ty, a)])
        case(f"alignment_{a}.gguf", g.build()[0], f"general.alignment = {a}", "BadAlignment",
             f"general.alignment = {a} is not a power of two")
    g = header(arch_kv() + [KV("general.alignment", STR, "32")])
    case("alignment_string.gguf", g.build()[0], "general.alignment is a string", "BadKey",
         'metadata "general.alignment": expected an unsigned integer, found string')
    case("ok_small_llama_align64.gguf",
         variant(lambda g: (g.set("general.alignment", U32, 64), setattr(g, "alignment", 64))),
         "control: general.alignment = 64", "Ok", "")

    # --- tensor infos (hand-built headers with one f32 tensor)
    def one(dims, ty=T_F32, n_dims=None, offset=0, data=b"", cut=False):
        """A header with one tensor whose data section is `data`; cut: no padding either."""
        t = T("x.weight", dims, ty, b"")
        t.n_dims, t.offset, t.phantom = n_dims, offset, True
        raw, marks = header(arch_kv(), [t]).build()
        return raw[:marks["header_end"]] if cut else raw + data

    case("n_dims_0.gguf", one([], n_dims=0), "a tensor with n_dims 0", "BadTensor",
         'tensor "x.weight": 0 dimensions (must be 1..=4)')
    case("n_dims_5.gguf", one([1, 1, 1, 1, 1]), "a tensor with n_dims 5", "BadTensor", "5 dimensions (must be 1..=4)")
    case("n_dims_2p32m1.gguf", one([], n_dims=0xFFFFFFFF), "a tensor with n_dims 2^32-1", "BadTensor",
         "4294967295 dimensions")
    case("dims_product_overflow.gguf", one([1 << 32, 1 << 32]), "dims 2^32 x 2^32", "BadTensor",
         "shape [4294967296, 4294967296] overflows the element count")
    case("dims_product_over_i64.gguf", one([1 << 62, 2]), "dims 2^62 x 2 (> i64::MAX elements)", "BadTensor",
         "overflows the element count")
    case("dim_negative.gguf", one([1, (1 << 64) - 1]), "a dimension of -1 as int64", "BadTensor",
         "dimension 1 = 18446744073709551615 is negative as int64")
    case("bytes_overflow.gguf", one([1 << 62]), "2^62 f32 elements (2^64 bytes)", "BadTensor",
         "shape [4611686018427387904] of type f32 overflows the byte size")
    case("huge_tensor.gguf", one([1 << 40]), "a 4 TiB f32 tensor in a small file", "Truncated",
         'data of tensor "x.weight" (4398046511104 bytes at data offset 0)')
    case("ggml_type_999.gguf", one([8], ty=999), "ggml type 999", "BadTensor", "unknown or retired ggml type 999")
    case("ggml_type_4.gguf", one([8], ty=4), "ggml type 4 (Q4_2, retired)", "BadTensor",
         "unknown or retired ggml type 4")
    case("ggml_type_q4_0_row_8.gguf", one([8], ty=T_Q4_0), "q4_0 tensor with rows of 8", "BadTensor",
         "row length 8 is not a multiple of the q4_0 block size 32")
    case("offset_past_end.gguf", one([8], offset=4096, data=f32s([1.0] * 8)), "offset 4096 in a 32-byte data section",
         "Truncated", 'data of tensor "x.weight" (32 bytes at data offset 4096)')
    case("offset_u64_max.gguf", one([8], offset=(1 << 64) - 32, data=f32s([1.0] * 8)),
         "offset 2^64-32 (offset + size overflows)", "Truncated", 'data of tensor "x.weight"')
    case("unaligned_offset.gguf", one([8], offset=4, data=f32s([1.0] * 8)), "offset 4 (alignment 32)", "BadTensor",
         "offset 4 is not a multiple of the alignment 32")
    case("zero_size_past_eof.gguf", one([0], cut=True), "0-element tensor, file ends before the aligned data section",
         "Truncated", "padding before the data section")
    # (Gguf.build cannot pad to 2^63: written by hand, header only.)
    kvs = arch_kv() + [KV("general.alignment", U64, 1 << 63)]
    raw = b"GGUF" + u32(3) + u64(1) + u64(len(kvs)) + b"".join(k.encode() for k in kvs)
    raw += gstr("x.weight") + u32(1) + u64(0) + u32(T_F32) + u64(0)
    case("alignment_2p63_zero_size.gguf", bytes(raw),
         "general.alignment = 2^63 and a 0-element tensor: data section starts past the end",
         "Truncated", "padding before the data section")

    # --- tensor layout in a model (patches of ok_small_llama.gguf)
    def with_tensor(tname, **changes):
        def f(g):
            t = g.tensor(tname)
            g.layout()
            for k, v in changes.items():
                setattr(t, k, v(g) if callable(v) else v)
        return f

    case("duplicate_tensor.gguf", variant(with_tensor("blk.0.attn_k.weight", name="blk.0.attn_q.weight")),
         "blk.0.attn_q.weight twice", "DuplicateTensor", 'duplicate tensor name "blk.0.attn_q.weight"')
    case("overlapping_tensors.gguf",
         variant(with_tensor("blk.0.attn_k.weight", offset=lambda g: g.tensor("blk.0.attn_q.weight").offset + 64)),
         "attn_k starts half-way into attn_q", "BadTensor",
         f'tensor "blk.0.attn_k.weight": data at offset {base_g.tensor("blk.0.attn_q.weight").offset + 64} '
         'overlaps tensor "blk.0.attn_q.weight"')
    case("unaligned_tensor_in_model.gguf",
         variant(with_tensor("blk.0.attn_v.weight", offset=lambda g: g.tensor("blk.0.attn_v.weight").offset + 2)),
         "attn_v at an offset 2 past its slot", "BadTensor", "is not a multiple of the alignment 32")

    # --- model level (Model::load)
    def drop_tensor(name):
        return lambda g: setattr(g, "tensors", [t for t in g.tensors if t.name != name])

    def kvset(key, ty, value):
        return lambda g: g.set(key, ty, value)

    case("model_missing_ffn_down.gguf", variant(drop_tensor("blk.0.ffn_down.weight")),
         "no blk.0.ffn_down.weight", "Model", 'missing tensor "blk.0.ffn_down.weight"')
    case("model_missing_token_embd.gguf", variant(drop_tensor("token_embd.weight")),
         "no token_embd.weight", "Model", 'missing tensor "token_embd.weight"')
    case("model_wrong_shape.gguf",
         variant(with_tensor("blk.0.attn_q.weight", dims=[8, 4], data=lambda g: g.tensor("blk.0.attn_q.weight").data[:64])),
         "attn_q is [8, 4], not [8, 8]", "Model", 'tensor "blk.0.attn_q.weight" has shape [8, 4], expected [8, 8]')
    case("model_transposed.gguf",
         variant(with_tensor("blk.0.ffn_gate.weight", dims=[32, 8])),
         "ffn_gate is [32, 8] (transposed)", "Model", 'tensor "blk.0.ffn_gate.weight" has shape [32, 8], expected [8, 32]')
    case("model_head_count_0.gguf", variant(kvset("llama.attention.head_count", U32, 0)),
         "llama.attention.head_count = 0", "Model", "a head count, embedding length, block count or feed-forward length is 0")
    case("model_head_count_kv_3.gguf", variant(kvset("llama.attention.head_count_kv", U32, 3)),
         "head_count 2, head_count_kv 3", "Model", "head_count 2 is not a multiple of head_count_kv 3")
    case("model_block_count_2.gguf", variant(kvset("llama.block_count", U32, 2)),
         "block_count 2 with one layer of tensors", "Model", 'missing tensor "blk.1.attn_norm.weight"')
    case("model_block_count_huge.gguf", variant(kvset("llama.block_count", U64, 1 << 40)),
         "block_count 2^40", "Model", "implausible shape")
    case("model_block_count_string.gguf", variant(kvset("llama.block_count", STR, "1")),
         "block_count is a string", "BadKey", 'metadata "llama.block_count": expected an unsigned integer, found string')
    case("model_block_count_negative.gguf", variant(kvset("llama.block_count", I32, -1)),
         "block_count is i32 -1", "BadKey", "expected an unsigned integer, found i32")
    case("model_arch_gpt2.gguf", variant(kvset("general.architecture", STR, "gpt2")),
         "general.architecture = gpt2", "Model", 'unsupported architecture "gpt2"')
    case("model_no_arch.gguf", variant(lambda g: g.drop("general.architecture")),
         "no general.architecture", "Model", 'missing metadata key "general.architecture"')
    case("model_no_embedding_length.gguf", variant(lambda g: g.drop("llama.embedding_length")),
         "no llama.embedding_length", "Model", 'missing metadata key "llama.embedding_length"')
    case("model_rope_dim_odd.gguf", variant(kvset("llama.rope.dimension_count", U32, 3)),
         "rope.dimension_count 3", "Model", "rope.dimension_count 3 does not fit head_dim 4")
    case("model_freq_base_nan.gguf", variant(kvset("llama.rope.freq_base", F32, float("nan"))),
         "rope.freq_base NaN", "Model", "rope.freq_base NaN is not a number > 1")
    case("model_rope_freqs_shape.gguf",
         variant(lambda g: g.tensors.append(T("rope_freqs.weight", [3], T_F32, f32s([1.0, 1.0, 1.0])))),
         "rope_freqs.weight of 3 values (head_dim 4 needs 2)", "Model", "rope_freqs.weight must be f32 [2], found f32 [3]")
    # key_length is not validated: 2^63 + 4 wraps head_dim * head_count to 8 in release
    # builds, so the tensor shapes match and the model loads with head_dim 2^63 + 4 (a
    # debug build panics on the multiplication instead). See docs/RELIABILITY.md.
    case("model_key_length_wraps.gguf", variant(kvset("llama.attention.key_length", U64, (1 << 63) + 4)),
         "attention.key_length 2^63+4 (head_dim x head_count wraps to 8)", "Model", "key_length", "ok")

    # --- tokenizer (built by Model::load from the tokenizer.ggml.* metadata)
    def cut_array(key, n):
        def f(g):
            k = g.kv(key)
            et, vals = k.value
            k.value = (et, vals[:n])
        return f

    case("tok_vocab_15.gguf", variant(cut_array("tokenizer.ggml.tokens", VOCAB - 1)),
         f"{VOCAB - 1} tokens for {VOCAB} embedding rows", "Model",
         f"vocabulary has {VOCAB - 1} tokens but token_embd.weight has {VOCAB} rows")
    case("tok_scores_short.gguf", variant(cut_array("tokenizer.ggml.scores", 8)),
         "8 scores for 16 tokens", "Tokenizer", "bad tokenizer.ggml.scores")
    case("tok_type_short.gguf", variant(cut_array("tokenizer.ggml.token_type", 3)),
         "3 token types for 16 tokens", "Tokenizer", "bad tokenizer.ggml.token_type")
    case("tok_no_tokens.gguf", variant(lambda g: g.drop("tokenizer.ggml.tokens")),
         "no tokenizer.ggml.tokens", "Tokenizer", "cannot find tokenizer vocab (tokenizer.ggml.tokens)")
    case("tok_tokens_u32.gguf", variant(kvset("tokenizer.ggml.tokens", ARR, (U32, list(range(VOCAB))))),
         "tokenizer.ggml.tokens is an array of u32", "Tokenizer", "cannot find tokenizer vocab")
    case("tok_model_unknown.gguf", variant(kvset("tokenizer.ggml.model", STR, "sentencepiece")),
         "tokenizer.ggml.model = sentencepiece", "Tokenizer", 'unknown tokenizer: "sentencepiece"')
    case("tok_no_model.gguf", variant(lambda g: g.drop("tokenizer.ggml.model")),
         "no tokenizer.ggml.model", "Tokenizer", "no tokenizer.ggml.model")
    case("tok_bos_id_string.gguf", variant(kvset("tokenizer.ggml.bos_token_id", STR, "1")),
         "bos_token_id is a string", "Tokenizer", 'metadata "tokenizer.ggml.bos_token_id": expected an integer, found string')
    case("ok_bos_id_out_of_range.gguf", variant(kvset("tokenizer.ggml.bos_token_id", U64, 1 << 40)),
         "control: bos_token_id 2^40 (out of range ids are ignored, as in llama.cpp)", "Ok", "")

    # --- CLEX (docs/gguf-clex.md)
    def cvar(f):
        return variant(f, clex_based=True)

    case("clex_up_wrong_shape.gguf", cvar(with_tensor("clex.ode_up_proj", dims=[2, 4])),
         "clex.ode_up_proj is [2, 4] (transposed), not [4, 2]", "Clex",
         'tensor "clex.ode_up_proj" has shape [2, 4], expected [4, 2]')
    case("clex_inv_freq_wrong_shape.gguf",
         cvar(with_tensor("clex.inv_freq", dims=[3], data=f32s([1.0, 0.1, 0.01]))),
         "clex.inv_freq has 3 values, not d/2 = 2", "Clex", 'tensor "clex.inv_freq" has shape [3], expected [2]')
    case("clex_nan.gguf",
         cvar(with_tensor("clex.ode_down_proj", data=lambda g: f32s([float("nan")]) + g.tensor("clex.ode_down_proj").data[4:])),
         "NaN in clex.ode_down_proj", "Clex", "ode_down_proj[0][0] = NaN is not finite")
    case("clex_inv_freq_zero.gguf", cvar(with_tensor("clex.inv_freq", data=f32s([1.0, 0.0]))),
         "clex.inv_freq[1] = 0", "Clex", "inv_freq[1] = 0 is not finite and > 0")
    case("clex_f16_tensor.gguf",
         cvar(with_tensor("clex.inv_freq", ty=T_F16, data=struct.pack("<2e", 1.0, 0.01))),
         "clex.inv_freq stored as f16", "Clex", 'tensor "clex.inv_freq" must be f32, found f16')
    case("clex_missing_tensor.gguf", cvar(drop_tensor("clex.ode_up_proj")),
         "no clex.ode_up_proj", "Clex", 'missing tensor "clex.ode_up_proj"')
    case("clex_act_relu.gguf", cvar(kvset("llama.rope.clex.act", STR, "relu")),
         "clex.act = relu", "Clex", 'unknown CLEX activation "relu" (tanh|silu)')
    case("clex_max_factor_0.gguf", cvar(kvset("llama.rope.clex.max_factor", U32, 0)),
         "clex.max_factor = 0", "Clex", "max_factor T, param_factor p and orig_ctx L must be >= 1, got 0, 1, 64")
    case("clex_max_factor_huge.gguf", cvar(kvset("llama.rope.clex.max_factor", U32, 100000)),
         "clex.max_factor = 100000", "Clex", "implausible CLEX sizes: max_factor 100000")
    case("clex_max_factor_2p32.gguf", cvar(kvset("llama.rope.clex.max_factor", U64, 1 << 32)),
         "clex.max_factor = 2^32 (as u64)", "BadKey", "4294967296 does not fit in 32 bits")
    case("clex_missing_max_factor.gguf", cvar(lambda g: g.drop("llama.rope.clex.max_factor")),
         "no clex.max_factor", "Clex", 'missing metadata key "llama.rope.clex.max_factor"')
    case("clex_missing_orig_ctx.gguf", cvar(lambda g: g.drop("llama.rope.scaling.original_context_length")),
         "no rope.scaling.original_context_length", "Clex",
         'missing metadata key "llama.rope.scaling.original_context_length"')
    case("clex_time_dt_0.gguf", cvar(kvset("llama.rope.clex.time_dt", F32, 0.0)),
         "clex.time_dt = 0", "Clex", "time_dt must be in [1e-4, 1], got 0")
    # time_dt is only checked to be in (0, 1]: 1e-30 makes round(1/h) saturate to 2^32-1
    # RK4 steps per unit of t, times T-1 = 4095 units: a load that never ends. See
    # docs/RELIABILITY.md.
    case("clex_time_dt_tiny.gguf",
         cvar(lambda g: (g.set("llama.rope.clex.time_dt", F32, 1e-30), g.set("llama.rope.clex.max_factor", U32, 4096))),
         "clex.time_dt = 1e-30, max_factor 4096 (2^32 RK4 steps per unit of t)", "Clex", "time_dt", "ok")
    case("clex_log_scale_byte_2.gguf", cvar(kvset("llama.rope.clex.log_scale", BOOL, 2)),
         "clex.log_scale bool byte 2", "BadKey", 'metadata "llama.rope.clex.log_scale": bool byte 2 is neither 0 nor 1')
    case("clex_act_number.gguf", cvar(kvset("llama.rope.clex.act", U32, 1)),
         "clex.act is a u32", "BadKey", 'metadata "llama.rope.clex.act": expected a string, found u32')
    case("clex_rope_dim_2.gguf", cvar(kvset("llama.rope.dimension_count", U32, 2)),
         "CLEX with rotary d = 2 (< 4)", "Clex", "head_dim (rotary d) must be even and >= 4, got 2")


def main():
    check = "--check" in sys.argv[1:]
    args = [a for a in sys.argv[1:] if a != "--check"]
    path = args[0] if args else fixture_path()
    fx = read_fixture(path)
    make_cases(fx)
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)), "duplicate file names"
    rows = ["file\twhat\tclass\tsubstring\tstatus"]
    files = {}
    for file, data, what, cls, sub, status in CASES:
        files[file] = data
        rows.append("\t".join([file, what, cls, sub, status]))
    files["MANIFEST.tsv"] = ("\n".join(rows) + "\n").encode()
    stale = sorted(f for f in os.listdir(HERE) if f.endswith(".gguf") and f not in files)
    changed = [f for f, d in files.items()
               if not os.path.exists(os.path.join(HERE, f)) or open(os.path.join(HERE, f), "rb").read() != d]
    if check:
        for f in changed + stale:
            print(f"out of date: {f}")
        sys.exit(1 if changed or stale else 0)
    for f in stale:
        os.remove(os.path.join(HERE, f))
    for f, d in files.items():
        with open(os.path.join(HERE, f), "wb") as fh:
            fh.write(d)
    total = sum(len(d) for d in files.values())
    digest = hashlib.sha256(b"".join(files[f] for f in sorted(files))).hexdigest()[:16]
    print(f"{len(CASES)} cases, {total} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
