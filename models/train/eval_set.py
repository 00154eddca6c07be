"""The evaluation texts: the first 8192 tokens (as the runtime tokenizes them: BOS + the text)
of each held-out document, cut at a token boundary, so that every window length 256 ... 4096
scores exactly the same 4 x 8192 tokens (2 windows of 4096 per text, 32 of 256, ...).

  python eval_set.py   # out/heldout/*.txt -> out/eval/texts/*.txt
"""
from pathlib import Path

import sentencepiece as spm

HERE = Path(__file__).parent
N = 8192


def main():
    sp = spm.SentencePieceProcessor(model_file=str(HERE / "out" / "tokenizer" / "tokenizer.model"))
    dst = HERE / "out" / "eval" / "texts"
    dst.mkdir(parents=True, exist_ok=True)
    for src in sorted((HERE / "out" / "heldout").glob("*.txt")):
        text = src.read_text(encoding="utf-8")
        proto = sp.encode(text, out_type="immutable_proto")
        # BOS + pieces[:N-1] + one more piece, so that the count is N + 1 at most after a
        # re-tokenization of the prefix, and never below N
        end = proto.pieces[N].end
        cut = text[:end]
        n = 1 + len(sp.encode(cut))
        assert N <= n < N + 256, (src.name, n)
        (dst / src.name).write_text(cut + "\n", encoding="utf-8")
        print(f"{src.name}: {len(cut)} characters, {n} tokens with BOS")


if __name__ == "__main__":
    main()
