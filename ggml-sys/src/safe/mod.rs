//! The one safe wrapper over the raw bindings. Everything outside `ggml-sys` goes
//! through these types; none of them exposes a raw pointer that the caller must
//! keep valid by hand.

mod backend;
mod log;
mod mmap;
mod quant;
mod repack;
mod tensor;
mod types;

pub use backend::{cpu_features, device_count, devices, Backend, Buffer, DeviceInfo, DeviceKind, Sched};
pub use log::{set_log_sink, LogLevel};
pub use mmap::MappedFile;
pub use quant::*;
pub use repack::{cpu_extra_buffer_types, RepackStats, WeightUse};
pub use tensor::{row_size, Graph, RopeArgs, Tensor, TensorStore};
pub use types::{type_by_name, type_info, TypeInfo};
