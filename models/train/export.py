"""Step 4: write Hugging Face checkpoints that `clex-run convert` takes.

  python export.py [--log-scale]      # out/ckpt/{clex,rope}.pt -> out/hf/{clex-llama-5m,rope-llama-5m}

The layout mirrors ../shared/fixtures/clex-tiny/hf: config.json (LlamaForCausalLM; for
CLEX rope_scaling = {type: clex, max_factor, param_factor, act, time_dt, factor: 1} and
a top-level log_scale), model.safetensors (float32, Hugging Face tensor names, CLEX tensors
model.clex_layer.proj_func.ode_up_proj / ode_down_proj / inv_freq), tokenizer.model,
tokenizer_config.json, special_tokens_map.json.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).parent

SPECIAL = {
    "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "unk_token": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
}


def hf_config(cfg, log_scale):
    c = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": cfg["max_position_embeddings"],
        "initializer_range": 0.02,
        "rms_norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if cfg.get("clex"):
        x = cfg["clex"]
        c["rope_scaling"] = {
            "type": "clex",
            "max_factor": x["max_factor"],
            "param_factor": x["param_factor"],
            "act": x["act"],
            "time_dt": x["time_dt"],
            "factor": 1,
        }
        c["log_scale"] = bool(log_scale)
    return c


def tokenizer_config(max_len):
    dec = {}
    for i, tok in enumerate(["<unk>", "<s>", "</s>"]):
        dec[str(i)] = {"content": tok, "lstrip": False, "normalized": False, "rstrip": False,
                       "single_word": False, "special": True}
    return {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": dec,
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": max_len,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
    }


def export(ckpt, out, tokenizer, log_scale):
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = ck["cfg"]
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in ck["model"].items()}
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    conf = hf_config(cfg, log_scale)
    (out / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    L = cfg["max_position_embeddings"]
    max_len = L * cfg["clex"]["max_factor"] if cfg.get("clex") else L
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(max_len), indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(SPECIAL, indent=2) + "\n")
    shutil.copy(tokenizer, out / "tokenizer.model")
    n = sum(v.numel() for v in tensors.values())
    print(f"{ckpt} -> {out}: {len(tensors)} tensors, {n/1e6:.3f} M values, log_scale {conf.get('log_scale')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--log-scale", action="store_true", help="set log_scale in the CLEX config")
    args = ap.parse_args()
    out = Path(args.out)
    tok = out / "tokenizer" / "tokenizer.model"
    export(out / "ckpt" / "clex.pt", out / "hf" / "clex-llama-5m", tok, args.log_scale)
    export(out / "ckpt" / "rope.pt", out / "hf" / "rope-llama-5m", tok, False)


if __name__ == "__main__":
    main()
