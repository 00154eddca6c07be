//! Quantization through ggml (being written).
