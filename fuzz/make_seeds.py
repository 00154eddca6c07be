#!/usr/bin/env python3
"""Fills fuzz/corpus/seeds/ with seed inputs for both fuzz targets (python3 stdlib only).

    cd fuzz && python3 make_seeds.py

Seeds:
  * every file of tests/bad_inputs/ (small models cut from the real llama-2 fixture and
    hand-built malformed headers), regenerated first by its make.py, except the known
    bugs (MANIFEST status xfail), which would stop the fuzzer at once;
  * a Qwen2-shaped variant of the small model (biases), for the loader's other branch;
  * each real GGUF found (the llama-2 fixture, llama.cpp's vocab files and the Qwen2.5
    Q4_K_M model of the fetched test data): a "shrunk" valid copy (every array cut to 8
    elements, tensors dropped unless the file is small) and truncated copies (first 1 KiB
    and 8 KiB), so the fuzzer starts from the real key names, types and layouts.
Deterministic; the folder is git-ignored (regenerate it, do not commit it).
"""

import glob
import mmap
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


def main():
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
