//! GGUF writer (being written).
pub struct GgufWriter;
