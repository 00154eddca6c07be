//! BPE pre-tokenizer kinds: `tokenizer.ggml.pre` names, the flags each one sets,
//! and the split regexes, all as in llama.cpp's `llama-vocab.cpp` (the regex
//! strings are copied verbatim, so the custom splitters are recognised by text
//! exactly as llama.cpp recognises them).

/// A BPE pre-tokenizer kind (llama.cpp's `llama_vocab_pre_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Pre {
    Default,
    Llama3,
    Jais2,
    Dbrx,
    Smaug,
    DeepseekLlm,
    Deepseek3Llm,
    HunyuanDense,
    JoyaiLlm,
    HyV4,
    Spark25,
    Youtu,
    DeepseekCoder,
    Falcon,
    Starcoder,
    Refact,
    CommandR,
    Smollm,
    Codeshell,
    Exaone,
    Minerva,
    Mellum2,
    Gpt2,
    Mpt,
    Olmo,
    Jais,
    Trillion,
    GraniteDocling,
    Stablelm2,
    Qwen2,
    Hunyuan,
    SolarOpen,
    Qwen35,
    Poro,
    Bloom,
    Gpt3Finnish,
    Chatglm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    MinimaxM2,
    GraniteEmbMulti,
    Bailingmoe,
    SeedCoder,
    Ufakzeka,
    Grok2,
    Laguna,
    ExaoneMoe,
    Gemma4,
    SarvamMoe,
    Minicpm5,
}

/// Every kind, for tests.
#[cfg(test)]
pub(crate) const ALL: &[Pre] = &[
    Pre::Default,
    Pre::Llama3,
    Pre::Jais2,
    Pre::Dbrx,
    Pre::Smaug,
    Pre::DeepseekLlm,
    Pre::Deepseek3Llm,
    Pre::HunyuanDense,
    Pre::JoyaiLlm,
    Pre::HyV4,
    Pre::Spark25,
    Pre::Youtu,
    Pre::DeepseekCoder,
    Pre::Falcon,
    Pre::Starcoder,
    Pre::Refact,
    Pre::CommandR,
    Pre::Smollm,
    Pre::Codeshell,
    Pre::Exaone,
    Pre::Minerva,
    Pre::Mellum2,
    Pre::Gpt2,
    Pre::Mpt,
    Pre::Olmo,
    Pre::Jais,
    Pre::Trillion,
    Pre::GraniteDocling,
    Pre::Stablelm2,
    Pre::Qwen2,
    Pre::Hunyuan,
    Pre::SolarOpen,
    Pre::Qwen35,
    Pre::Poro,
    Pre::Bloom,
    Pre::Gpt3Finnish,
    Pre::Chatglm4,
    Pre::Viking,
    Pre::Tekken,
    Pre::Chameleon,
    Pre::Gpt4o,
    Pre::MinimaxM2,
    Pre::GraniteEmbMulti,
    Pre::Bailingmoe,
    Pre::SeedCoder,
    Pre::Ufakzeka,
    Pre::Grok2,
    Pre::Laguna,
    Pre::ExaoneMoe,
    Pre::Gemma4,
    Pre::SarvamMoe,
    Pre::Minicpm5,
];

/// What a `tokenizer.ggml.pre` name selects, with the flags llama.cpp sets for it
/// (starting from the BPE defaults: clean spaces, no BOS, no whitespace escaping).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreCfg {
    pub pre: Pre,
    pub ignore_merges: bool,
    pub clean_spaces: bool,
    pub add_bos: bool,
    pub escape_whitespaces: bool,
    /// The kind has no BOS token (chatglm).
    pub no_bos: bool,
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name.
pub(crate) fn bpe_pre(name: &str) -> Result<PreCfg, String> {
    let mut c = PreCfg {
        pre: Pre::Default,
        ignore_merges: false,
        clean_spaces: true,
        add_bos: false,
        escape_whitespaces: false,
        no_bos: false,
    };
    let keep_spaces = |c: &mut PreCfg, p: Pre| {
        c.pre = p;
        c.clean_spaces = false;
    };
    match name {
        "" | "default" => {}
        "minicpm5" => (c.pre, c.ignore_merges) = (Pre::Minicpm5, true),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => (c.pre, c.ignore_merges, c.add_bos) = (Pre::Llama3, true, true),
        "deepseek-llm" => keep_spaces(&mut c, Pre::DeepseekLlm),
        "deepseek-coder" => keep_spaces(&mut c, Pre::DeepseekCoder),
        "deepseek-v3" => keep_spaces(&mut c, Pre::Deepseek3Llm),
        "spark2_5" => keep_spaces(&mut c, Pre::Spark25),
        "youtu" => {
            keep_spaces(&mut c, Pre::Youtu);
            c.ignore_merges = true;
        }
        "falcon" => c.pre = Pre::Falcon,
        "mpt" => c.pre = Pre::Mpt,
        "starcoder" => c.pre = Pre::Starcoder,
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "exaone4" => c.pre = Pre::Gpt2,
        "jais-2" => c.pre = Pre::Jais2,
        "gemma4" | "granite-embed-multi-311m" => (c.pre, c.escape_whitespaces) = (Pre::Gemma4, true),
        "sarvam-moe" => {
            keep_spaces(&mut c, Pre::SarvamMoe);
            c.escape_whitespaces = true;
        }
        "refact" => c.pre = Pre::Refact,
        "command-r" => keep_spaces(&mut c, Pre::CommandR),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => keep_spaces(&mut c, Pre::Qwen2),
        "qwen35" => keep_spaces(&mut c, Pre::Qwen35),
        "stablelm2" => c.pre = Pre::Stablelm2,
        "olmo" => c.pre = Pre::Olmo,
        "dbrx" => c.pre = Pre::Dbrx,
        "smaug-bpe" => c.pre = Pre::Smaug,
        "poro-chat" => keep_spaces(&mut c, Pre::Poro),
        "chatglm-bpe" => (c.pre, c.no_bos) = (Pre::Chatglm4, true),
        "glm4" | "glm5" => (c.pre, c.no_bos, c.ignore_merges) = (Pre::Chatglm4, true, true),
        "viking" => keep_spaces(&mut c, Pre::Viking),
        "jais" => c.pre = Pre::Jais,
        "tekken" => {
            keep_spaces(&mut c, Pre::Tekken);
            (c.ignore_merges, c.add_bos) = (true, true);
        }
        "smollm" => keep_spaces(&mut c, Pre::Smollm),
        "codeshell" => c.pre = Pre::Codeshell,
        "bloom" => c.pre = Pre::Bloom,
        "gpt3-finnish" => c.pre = Pre::Gpt3Finnish,
        "exaone" => c.pre = Pre::Exaone,
        "exaone-moe" => c.pre = Pre::ExaoneMoe,
        "chameleon" => {
            keep_spaces(&mut c, Pre::Chameleon);
            c.add_bos = true;
        }
        "minerva-7b" => c.pre = Pre::Minerva,
        "megrez" => c.pre = Pre::Qwen2,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => keep_spaces(&mut c, Pre::Gpt4o),
        "granite-embed-multi-97m" => {
            keep_spaces(&mut c, Pre::GraniteEmbMulti);
            c.ignore_merges = true;
        }
        "trillion" => keep_spaces(&mut c, Pre::Trillion),
        "granite-docling" => keep_spaces(&mut c, Pre::GraniteDocling),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => keep_spaces(&mut c, Pre::Bailingmoe),
        "seed-coder" => keep_spaces(&mut c, Pre::SeedCoder),
        "hunyuan" => keep_spaces(&mut c, Pre::Hunyuan),
        "hunyuan-dense" => keep_spaces(&mut c, Pre::HunyuanDense),
        "hy_v4" => keep_spaces(&mut c, Pre::HyV4),
        "joyai-llm" => keep_spaces(&mut c, Pre::JoyaiLlm),
        "ufakzeka" => keep_spaces(&mut c, Pre::Ufakzeka),
        "grok-2" => keep_spaces(&mut c, Pre::Grok2),
        "laguna" => keep_spaces(&mut c, Pre::Laguna),
        "minimax-m2" => keep_spaces(&mut c, Pre::MinimaxM2),
        "solar-open" => keep_spaces(&mut c, Pre::SolarOpen),
        "mellum2" => c.pre = Pre::Mellum2,
        "mmbert" | "whitespace" | "tiny_aya" | "cohere2moe" | "superbpe" | "kimi-k2" | "afmoe" => {
            return Err(format!("unsupported pre-tokenizer type: '{name}'"))
        }
        _ => return Err(format!("unknown pre-tokenizer type: '{name}'")),
    }
    Ok(c)
}

/// Whether words are GPT-2 byte-encoded (false for the SPM-style BPE kinds).
pub(crate) fn byte_encode(pre: Pre) -> bool {
    !matches!(pre, Pre::Gemma4 | Pre::SarvamMoe)
}

/// The split regexes of a kind, applied one after another.
#[rustfmt::skip]
pub(crate) fn exprs(pre: Pre) -> &'static [&'static str] {
    match pre {
        Pre::Llama3 => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Jais2 => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}",
        ],
        Pre::Dbrx | Pre::Smaug => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::DeepseekLlm => &[
            "[\r\n]",
            "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
            "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
            "\\s+$",
            "[一-龥ࠀ-一가-퟿]+",
            "\\p{N}+",
        ],
        Pre::Deepseek3Llm | Pre::HunyuanDense | Pre::JoyaiLlm | Pre::HyV4 => &[
            "\\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Spark25 => &[
            "\\p{N}{1,3}",
            "[一-龥぀-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
            "\\p{N}",
        ],
        Pre::Youtu => &[
            "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
            "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::DeepseekCoder => &[
            "[\r\n]",
            "\\s?\\p{L}+",
            "\\s?\\p{P}+",
            "[一-龥ࠀ-一가-퟿]+",
            "\\p{N}",
        ],
        Pre::Falcon => &[
            "[\\p{P}\\$\\+<=>\\^~\\|`]+",
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
            "[0-9][0-9][0-9]",
        ],
        Pre::Starcoder | Pre::Refact | Pre::CommandR | Pre::Smollm | Pre::Codeshell | Pre::Exaone | Pre::Minerva | Pre::Mellum2 => &[
            "\\p{N}",
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        ],
        Pre::Gpt2 | Pre::Mpt | Pre::Olmo | Pre::Jais | Pre::Trillion | Pre::GraniteDocling => &[
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        ],
        Pre::Stablelm2 | Pre::Qwen2 | Pre::Hunyuan | Pre::SolarOpen => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Qwen35 => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Poro | Pre::Bloom | Pre::Gpt3Finnish => &[
            " ?[^(\\s|.,!?…。，、।۔،)]+",
        ],
        Pre::Chatglm4 => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Viking => &[
            " ?[^(\\s|.,!?…。，、।۔،)]+",
            "\\p{N}",
        ],
        Pre::Tekken => &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Chameleon => &[
            "<sentinel:[0-9]+>",
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            "([\\t\\n]|    |  )",
            "\\p{N}",
            "[\\p{P}!-/:-@\\[-`{-~]",
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
        ],
        Pre::Gpt4o | Pre::MinimaxM2 => &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::GraniteEmbMulti => &[
            "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Bailingmoe => &[
            "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        Pre::SeedCoder => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Ufakzeka => &[
            "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Grok2 => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Laguna => &[
            "[^\\n]+|[\\n]+",
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::ExaoneMoe => &[
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
        ],
        Pre::Gemma4 => &[
            "[^\\n]+|[\\n]+",
        ],
        Pre::SarvamMoe => &[
            "[^\\n]+|[\\n]+",
        ],
        Pre::Minicpm5 => &[
            "\\p{N}{1,3}",
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        ],
        Pre::Default => &[
            "[\\p{P}\\$\\+<=>\\^~\\|]+",
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
            "\\p{N}+",
            "[0-9][0-9][0-9]",
        ],
    }
}
