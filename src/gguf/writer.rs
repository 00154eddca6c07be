//! GGUF v3 writer: metadata of every value type, tensor infos, alignment padding, and
//! tensor data streamed one tensor at a time.
//!
//! Two phases. First describe the file: [`GgufWriter::add_kv`] for each metadata value and
//! [`GgufWriter::add_tensor`] for each tensor (name, ggml type, ggml-order dims; the byte size
//! and the offset follow from those and the alignment). Then [`GgufWriter::write`] writes the
//! header and asks a callback for each tensor's bytes in order, so a multi-GB model never has
//! to sit in memory whole: the callback gets the tensor's index and a `&mut dyn Write`, must
//! write exactly [`TensorInfo::size`] bytes, and the writer adds the zero padding.
//!
//! ```no_run
//! # use clex::gguf::{GgufWriter, Value};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut w = GgufWriter::new();
//! w.add_kv("general.architecture", Value::String("llama".into()))?;
//! let f32_id = 0; // GGML_TYPE_F32
//! w.add_tensor("output_norm.weight", f32_id, &[4])?;
//! w.write(std::path::Path::new("out.gguf"), |_index, out| {
//!     for x in [1.0f32; 4] {
//!         out.write_all(&x.to_le_bytes())?;
//!     }
//!     Ok(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! Layout (what llama.cpp's `gguf-py` writes, so a file re-written from its parsed form is
//! byte-identical): magic, version 3, tensor count, metadata count, the metadata, the tensor
//! infos, zero padding to the alignment, then each tensor's data followed by zero padding to
//! the alignment (the last one included). The alignment is `general.alignment` when that key
//! is set (any unsigned integer type, a power of two), else 32.

use super::value::{Array, Value};
use super::{GgufError, GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The GGUF version this writer produces.
pub const WRITE_VERSION: u32 = 3;

/// Builds and writes a GGUF file. See the module documentation for the two phases.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
}

impl GgufWriter {
    /// An empty file description.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer holding a copy of `f`'s metadata and tensor infos, in the same order: write it
    /// with `|i, w| w.write_all(f.tensor_data(&f.tensors()[i]))` to re-create the file (as
    /// GGUF v3). Edit it first with [`GgufWriter::set_kv`], [`GgufWriter::remove_kv`],
    /// [`GgufWriter::remove_tensor`] and [`GgufWriter::add_tensor`] to derive another file.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, GgufError> {
        let mut w = Self::new();
        for (k, v) in f.metadata() {
            w.add_kv(k.clone(), v.clone())?;
        }
        for t in f.tensors() {
            w.add_tensor(&t.name, t.ty.id, &t.dims)?;
        }
        Ok(w)
    }

    /// Adds a metadata value. A key may appear once (`DuplicateKey` otherwise); the value is
    /// checked as [`GgufWriter::set_kv`] does.
    pub fn add_kv(&mut self, key: impl Into<String>, value: Value) -> Result<(), GgufError> {
        let key = key.into();
        if self.keys.contains(&key) {
            return Err(GgufError::DuplicateKey(key));
        }
        check_value(&key, &value)?;
        self.keys.insert(key.clone());
        self.metadata.push((key, value));
        self.relayout();
        Ok(())
    }

    /// Sets a metadata value, replacing an existing one in place (its position kept) or
    /// appending a new key. Arrays must be homogeneous, which [`Array`] guarantees; nested
    /// arrays are allowed. `general.alignment` must be an unsigned integer that is a power of
    /// two; changing it re-lays the tensors out.
    pub fn set_kv(&mut self, key: impl Into<String>, value: Value) -> Result<(), GgufError> {
        let key = key.into();
        check_value(&key, &value)?;
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => {
                self.keys.insert(key.clone());
                self.metadata.push((key, value));
            }
        }
        self.relayout();
        Ok(())
    }

    /// Removes a metadata key, returning its value.
    pub fn remove_kv(&mut self, key: &str) -> Option<Value> {
        let i = self.metadata.iter().position(|(k, _)| k == key)?;
        self.keys.remove(key);
        let (_, v) = self.metadata.remove(i);
        if key == "general.alignment" {
            self.relayout();
        }
        Some(v)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// All metadata, in the order it will be written.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Adds a tensor and returns its index (the index the data callback of
    /// [`GgufWriter::write`] receives). `type_id` is a `ggml_type`; `dims` are in ggml order
    /// (`dims[0]` is the row length), 1 to 4 of them. The byte size is computed from the type
    /// (`dims[0]` must be a multiple of the type's block size) and the offset from the
    /// tensors before it and the alignment. Names must be unique.
    pub fn add_tensor(&mut self, name: &str, type_id: u32, dims: &[u64]) -> Result<usize, GgufError> {
        let bad = |msg: String| GgufError::BadTensor { name: name.to_string(), msg };
        if self.names.contains(name) {
            return Err(GgufError::DuplicateTensor(name.to_string()));
        }
        let ty =
            ggml_sys::safe::type_info(type_id).ok_or_else(|| bad(format!("unknown or retired ggml type {type_id}")))?;
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dimensions (must be 1..={MAX_DIMS})", dims.len())));
        }
        if let Some(d) = dims.iter().position(|&d| d > i64::MAX as u64) {
            return Err(bad(format!("dimension {d} = {} does not fit in int64", dims[d])));
        }
        let n_el = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("shape {dims:?} overflows the element count")))?;
        if !dims[0].is_multiple_of(ty.block_size) {
            return Err(bad(format!(
                "row length {} is not a multiple of the {} block size {}",
                dims[0], ty.name, ty.block_size
            )));
        }
        let size = (n_el / ty.block_size)
            .checked_mul(ty.type_size)
            .ok_or_else(|| bad(format!("shape {dims:?} of type {} overflows the byte size", ty.name)))?;
        self.names.insert(name.to_string());
        self.tensors.push(TensorInfo { name: name.to_string(), dims: dims.to_vec(), ty, offset: 0, size });
        self.relayout();
        Ok(self.tensors.len() - 1)
    }

    /// Removes the tensor called `name` (later tensors move down one index). Returns whether
    /// it was there.
    pub fn remove_tensor(&mut self, name: &str) -> bool {
        let Some(i) = self.tensors.iter().position(|t| t.name == name) else { return false };
        self.tensors.remove(i);
        self.names.remove(name);
        self.relayout();
        true
    }

    /// The tensor infos as they will be written (offsets relative to the data section).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The alignment of the data section and of each tensor in it.
    pub fn alignment(&self) -> u64 {
        // Validated by check_value whenever the key is set.
        self.get("general.alignment").and_then(Value::as_u64).unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// The header: everything before the data section, padding included.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut b, k);
            b.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut b, v);
        }
        for t in &self.tensors {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.id.to_le_bytes());
            b.extend_from_slice(&t.offset.to_le_bytes());
        }
        let padded = (b.len() as u64).div_ceil(self.alignment()) * self.alignment();
        b.resize(padded as usize, 0);
        b
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.header_bytes().len() as u64
    }

    /// Length of the data section, the padding after the last tensor included.
    pub fn data_len(&self) -> u64 {
        let a = self.alignment();
        self.tensors.last().map_or(0, |t| (t.offset + t.size).div_ceil(a) * a)
    }

    /// Size of the whole file.
    pub fn file_len(&self) -> u64 {
        self.data_offset() + self.data_len()
    }

    /// Writes the file to `path`, asking `data(i, out)` for the bytes of tensor `i`, in
    /// order. The file is first written as `path` + `.partial` and renamed when complete, so
    /// a failed write leaves no truncated GGUF behind. Returns the file length.
    pub fn write<F>(&self, path: &Path, data: F) -> io::Result<u64>
    where
        F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    {
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".partial");
        let result = (|| {
            let file = File::create(&tmp)?;
            let mut out = BufWriter::with_capacity(8 << 20, file);
            let n = self.write_to(&mut out, data)?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(n)
        })();
        match result {
            Ok(n) => {
                std::fs::rename(&tmp, path)?;
                Ok(n)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes the file to any writer (see [`GgufWriter::write`]). A callback that writes more
    /// or fewer bytes than the tensor's size is an `InvalidData` error naming the tensor.
    pub fn write_to<W, F>(&self, out: &mut W, mut data: F) -> io::Result<u64>
    where
        W: Write,
        F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    {
        let header = self.header_bytes();
        out.write_all(&header)?;
        let mut pos = 0u64;
        let zeros = vec![0u8; self.alignment() as usize];
        for (i, t) in self.tensors.iter().enumerate() {
            debug_assert_eq!(pos, t.offset);
            let mut counted = Counted { inner: &mut *out, n: 0, limit: t.size };
            data(i, &mut counted)?;
            if counted.n != t.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("tensor {:?}: data callback wrote {} bytes, expected {}", t.name, counted.n, t.size),
                ));
            }
            pos += t.size;
            let pad = pos.div_ceil(self.alignment()) * self.alignment() - pos;
            out.write_all(&zeros[..pad as usize])?;
            pos += pad;
        }
        out.flush()?;
        Ok(header.len() as u64 + pos)
    }

    /// Writes the whole file into memory (for small files and tests).
    pub fn to_bytes<F>(&self, data: F) -> io::Result<Vec<u8>>
    where
        F: FnMut(usize, &mut dyn Write) -> io::Result<()>,
    {
        let mut v = Vec::with_capacity(self.file_len() as usize);
        self.write_to(&mut v, data)?;
        Ok(v)
    }

    /// Recomputes every tensor's offset from the current alignment.
    fn relayout(&mut self) {
        let a = self.alignment();
        let mut off = 0u64;
        for t in &mut self.tensors {
            t.offset = off;
            off = (off + t.size).div_ceil(a) * a;
        }
    }
}

/// Counts (and caps) the bytes a tensor callback writes.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
    limit: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.n + buf.len() as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("tensor data callback wrote more than the tensor's {} bytes", self.limit),
            ));
        }
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn check_value(key: &str, value: &Value) -> Result<(), GgufError> {
    if key == "general.alignment" {
        let a = value.as_u64().ok_or_else(|| GgufError::BadKey {
            key: key.into(),
            msg: format!("expected an unsigned integer, found {}", value.type_name()),
        })?;
        if a == 0 || !a.is_power_of_two() {
            return Err(GgufError::BadAlignment(a));
        }
    }
    Ok(())
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::String(s) => put_str(b, s),
        Value::Array(a) => put_array(b, a),
    }
}

/// An array: element type, count, elements (a nested array element is type, count, items).
fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => b.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::F64(v) => le!(v),
        Array::Bool(v) => b.extend(v.iter().map(|&x| x as u8)),
        Array::String(v) => v.iter().for_each(|s| put_str(b, s)),
        Array::Array(v) => v.iter().for_each(|x| put_array(b, x)),
    }
}
