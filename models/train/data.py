"""Step 1: split the public-domain texts, train the SentencePiece tokenizer, tokenize.

Input: the texts fetched by ../shared/scripts/fetch-test-data.sh (default
~/.cache/clex-test-data/texts: kjv.txt, moby-dick.txt, devil.txt, jargon.txt, sotu/*.txt).

Held out from training (tokenizer included), for evaluation:
  * the Book of Isaiah from kjv.txt (all 66 chapters, 1292 verses: from "The vision of Isaiah
    the son of Amoz" up to, not including, Jeremiah 1:1);
  * three whole State of the Union addresses: 1907 (Theodore Roosevelt), 1946 (Harry S.
    Truman, written message), 1981 (Jimmy Carter, written message).

Outputs under OUT (default models/train/out):
  heldout/isaiah.txt, heldout/sotu-1907.txt, heldout/sotu-1946.txt, heldout/sotu-1981.txt
  tokenizer/tokenizer.model (+ .vocab)
  data/train.u16   every training document as [BOS] + its tokens, concatenated (uint16)
  data/heldout.u16 the same for the held-out texts (for PyTorch-side validation)
  data/meta.json   sizes and file lists
"""

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm

HELDOUT_SOTU = {
    "1907_theodore_roosevelt_r.txt": "sotu-1907.txt",
    "1946_harry_s_truman_d.txt": "sotu-1946.txt",
    "1981_jimmy_carter_d.txt": "sotu-1981.txt",
}
ISAIAH_FIRST = "The vision of Isaiah the son of Amoz"
JEREMIAH_FIRST = "The words of Jeremiah the son of Hilkiah"


def read(p):
    return Path(p).read_text(encoding="utf-8")


def split_texts(src):
    """(training documents as (name, text), held-out documents as (file name, text))."""
    train, held = [], []
    kjv = read(src / "kjv.txt").split("\n")
    a = next(i for i, l in enumerate(kjv) if l.startswith(ISAIAH_FIRST))
    b = next(i for i, l in enumerate(kjv) if l.startswith(JEREMIAH_FIRST))
    assert b - a == 1292, f"Isaiah should have 1292 verses, found {b - a}"
    held.append(("isaiah.txt", "\n".join(kjv[a:b]) + "\n"))
    train.append(("kjv-before-isaiah", "\n".join(kjv[:a]) + "\n"))
    train.append(("kjv-after-isaiah", "\n".join(kjv[b:])))
    for name in ("moby-dick.txt", "devil.txt", "jargon.txt"):
        train.append((name, read(src / name)))
    sotu = sorted(os.listdir(src / "sotu"))
    for name in sotu:
        if name in HELDOUT_SOTU:
            held.append((HELDOUT_SOTU[name], read(src / "sotu" / name)))
        else:
            train.append(("sotu/" + name, read(src / "sotu" / name)))
    assert len(held) == 1 + len(HELDOUT_SOTU), "a held-out address is missing"
    return train, held


def sentences(text, limit=2000):
    """Lines for the SentencePiece trainer (it skips lines longer than its limit)."""
    for line in text.split("\n"):
        while len(line) > limit:
            cut = line.rfind(". ", 0, limit)
            cut = cut + 1 if cut > 0 else limit
            yield line[:cut].strip()
            line = line[cut:]
        if line.strip():
            yield line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", default=os.path.expanduser("~/.cache/clex-test-data/texts"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "out"))
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()
    src, out = Path(args.texts), Path(args.out)
    for sub in ("heldout", "tokenizer", "data"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train, held = split_texts(src)
    for name, text in held:
        (out / "heldout" / name).write_text(text, encoding="utf-8")

    corpus = out / "data" / "spm-corpus.txt"
    with open(corpus, "w", encoding="utf-8") as f:
        for _, text in train:
            for s in sentences(text):
                f.write(s + "\n")
    # A LLaMA-style tokenizer: BPE, byte fallback, digits split, no normalization, so that
    # llama.cpp's (and clex's) SPM tokenizer reproduces SentencePiece's ids.
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out / "tokenizer" / "tokenizer"),
        model_type="bpe",
        vocab_size=args.vocab,
        character_coverage=0.9999,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        allow_whitespace_only_pieces=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        input_sentence_size=400000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
    t_tok = time.time() - t0
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model"))

    def encode_all(docs):
        ids = []
        for _, text in docs:
            # llama.cpp's -f drops one trailing newline; the documents are tokenized whole
            ids.append(1)
            ids.extend(sp.encode(text[:-1] if text.endswith("\n") else text))
        return np.array(ids, dtype=np.uint16)

    tr = encode_all(train)
    ho = encode_all(held)
    tr.tofile(out / "data" / "train.u16")
    ho.tofile(out / "data" / "heldout.u16")
    meta = {
        "vocab_size": sp.get_piece_size(),
        "train_documents": [n for n, _ in train],
        "heldout_documents": [n for n, _ in held],
        "train_chars": sum(len(t) for _, t in train),
        "train_tokens": int(tr.size),
        "heldout_chars": {n: len(t) for n, t in held},
        "heldout_tokens": {n: len(sp.encode(t[:-1] if t.endswith("\n") else t)) + 1 for n, t in held},
        "tokenizer_seconds": round(t_tok, 1),
        "total_seconds": round(time.time() - t0, 1),
    }
    (out / "data" / "meta.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps({k: v for k, v in meta.items() if k != "train_documents"}, indent=1))


if __name__ == "__main__":
    main()
