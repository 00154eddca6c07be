//! GGUF model files: a validating reader over a memory map and a writer.
//!
//! The reader checks everything it is given before it trusts it (magic, version,
//! counts against the bytes left, string lengths, nesting depth, tensor types,
//! shapes, offsets and alignment) and names the field that is wrong. Tensor data is
//! never copied: [`GgufFile::tensor_data`] borrows it from the map.

mod reader;
mod value;
pub mod writer;

use std::path::Path;
use std::sync::Arc;

pub use ggml_sys::safe::TypeInfo;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";

/// What is wrong with a GGUF file, naming the part that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GgufError {
    #[error("cannot read file: {0}")]
    Io(String),
    #[error("bad magic {0:02x?}: not a GGUF file")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3){1}")]
    BadVersion(u32, &'static str),
    #[error("file truncated: {what} needs {need} bytes at offset {at}, file has {len}")]
    Truncated { what: String, at: u64, need: u64, len: u64 },
    #[error("{what} = {count} cannot fit in the {left} bytes left in the file")]
    CountTooLarge { what: String, count: u64, left: u64 },
    #[error("{what}: invalid value type {ty}")]
    BadValueType { what: String, ty: u32 },
    #[error("{what}: arrays nested deeper than {max}")]
    TooDeep { what: String, max: usize },
    #[error("metadata key #{index} is not valid UTF-8")]
    KeyNotUtf8 { index: u64 },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("general.alignment = {0} is not a power of two (or is 0)")]
    BadAlignment(u64),
    #[error("tensor {name:?}: {msg}")]
    BadTensor { name: String, msg: String },
    #[error("metadata {key:?}: {msg}")]
    BadKey { key: String, msg: String },
}

/// One tensor's header entry, validated against the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (row length).
    pub dims: Vec<u64>,
    pub ty: TypeInfo,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Where the bytes of a file live.
#[derive(Debug)]
enum Backing {
    Map(Arc<ggml_sys::safe::MappedFile>),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m.bytes(),
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file. Cheap to share (`Arc` inside); the bytes stay mapped for
/// as long as any clone lives.
#[derive(Debug, Clone)]
pub struct GgufFile {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backing: Backing,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let map = ggml_sys::safe::MappedFile::open(path).map_err(|e| GgufError::Io(format!("{}: {e}", path.display())))?;
        Self::from_backing(Backing::Map(Arc::new(map)))
    }

    /// Parses a GGUF image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_backing(Backing::Owned(bytes))
    }

    fn from_backing(backing: Backing) -> Result<Self, GgufError> {
        let parsed = reader::parse(backing.bytes())?;
        Ok(Self {
            inner: Arc::new(Inner {
                backing,
                version: parsed.version,
                alignment: parsed.alignment,
                data_offset: parsed.data_offset,
                metadata: parsed.metadata,
                tensors: parsed.tensors,
            }),
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.inner.backing.bytes()
    }
    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.inner.version
    }
    /// Alignment of the data section and of every tensor in it.
    pub fn alignment(&self) -> u64 {
        self.inner.alignment
    }
    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.inner.data_offset
    }
    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.inner.metadata
    }
    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.inner.tensors
    }
    /// The memory map behind the file, if it is mapped (for zero-copy binding).
    pub fn mapped(&self) -> Option<Arc<ggml_sys::safe::MappedFile>> {
        match &self.inner.backing {
            Backing::Map(m) => Some(Arc::clone(m)),
            Backing::Owned(_) => None,
        }
    }

    /// Whether the file's bytes are memory-mapped (as opposed to owned).
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner.backing, Backing::Map(_))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.inner.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor called `name`, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.inner.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor (borrowed from the map, never copied).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.inner.data_offset + t.offset) as usize;
        &self.bytes()[start..start + t.size as usize]
    }

    fn typed<'a, T>(&'a self, key: &str, want: &str, f: impl Fn(&'a Value) -> Option<T>) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| GgufError::BadKey {
                key: key.to_string(),
                msg: format!("expected {want}, found {}", v.type_name()),
            }),
        }
    }

    /// An unsigned integer of any width (negative or non-integer values are an error).
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "an unsigned integer", Value::as_u64)
    }
    /// An unsigned integer that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| GgufError::BadKey { key: key.into(), msg: format!("{v} does not fit in 32 bits") }),
        }
    }
    /// A signed integer of any width.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.typed(key, "an integer", Value::as_i64)
    }
    /// A float (f32 or f64; integers are accepted too).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.typed(key, "a number", |v| v.as_f64().map(|x| x as f32))
    }
    /// A boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a bool", Value::as_bool)
    }
    /// A string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", Value::as_str)
    }
    /// An array of any element type.
    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.typed(key, "an array", Value::as_array)
    }
}
