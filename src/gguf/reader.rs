//! Parsing and validation of a GGUF image.

use super::value::{Array, Value, ValueType};
use super::{GgufError, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use std::collections::HashSet;

/// Deepest array nesting accepted (real files use 1).
const MAX_DEPTH: usize = 8;

pub(super) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(GgufError::Truncated { what: what(), at: self.pos as u64, need: n, len: self.b.len() as u64 });
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    /// A count that will size an allocation: each item needs at least `min` bytes.
    fn count(&mut self, min: u64, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        let n = self.u64(what)?;
        if n.checked_mul(min).is_none_or(|need| need > self.left()) {
            return Err(GgufError::CountTooLarge { what: what(), count: n, left: self.left() });
        }
        Ok(n)
    }

    fn bytes_str(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let n = self.count(1, &|| format!("{} (string length)", what()))?;
        self.take(n, what)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        // Values may hold arbitrary bytes (llama.cpp keeps them as std::string);
        // invalid UTF-8 is replaced rather than rejected.
        Ok(String::from_utf8_lossy(self.bytes_str(what)?).into_owned())
    }
}

macro_rules! read_vec {
    ($c:expr, $n:expr, $t:ty, $what:expr) => {{
        let raw = $c.take($n * std::mem::size_of::<$t>() as u64, $what)?;
        raw.chunks_exact(std::mem::size_of::<$t>())
            .map(|ch| <$t>::from_le_bytes(ch.try_into().expect("chunk size")))
            .collect::<Vec<$t>>()
    }};
}

fn read_value(c: &mut Cursor, ty: ValueType, what: &dyn Fn() -> String, depth: usize) -> Result<Value, GgufError> {
    Ok(match ty {
        ValueType::U8 => Value::U8(c.arr::<1>(what)?[0]),
        ValueType::I8 => Value::I8(c.arr::<1>(what)?[0] as i8),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.arr(what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.arr(what)?)),
        ValueType::U32 => Value::U32(c.u32(what)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.arr(what)?)),
        ValueType::U64 => Value::U64(c.u64(what)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.arr(what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.arr(what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.arr(what)?)),
        ValueType::Bool => Value::Bool(read_bool(c, what)?),
        ValueType::String => Value::String(c.string(what)?),
        ValueType::Array => Value::Array(read_array(c, what, depth + 1)?),
    })
}

fn read_bool(c: &mut Cursor, what: &dyn Fn() -> String) -> Result<bool, GgufError> {
    match c.arr::<1>(what)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(GgufError::BadKey { key: what(), msg: format!("bool byte {b} is neither 0 nor 1") }),
    }
}

fn read_array(c: &mut Cursor, what: &dyn Fn() -> String, depth: usize) -> Result<Array, GgufError> {
    if depth > MAX_DEPTH {
        return Err(GgufError::TooDeep { what: what(), max: MAX_DEPTH });
    }
    let code = c.u32(&|| format!("{} (array type)", what()))?;
    let ty = ValueType::from_code(code).ok_or_else(|| GgufError::BadValueType { what: format!("{} (array)", what()), ty: code })?;
    let n = c.count(ty.min_size(), &|| format!("{} (array length)", what()))?;
    Ok(match ty {
        ValueType::U8 => Array::U8(c.take(n, what)?.to_vec()),
        ValueType::I8 => Array::I8(c.take(n, what)?.iter().map(|&b| b as i8).collect()),
        ValueType::U16 => Array::U16(read_vec!(c, n, u16, what)),
        ValueType::I16 => Array::I16(read_vec!(c, n, i16, what)),
        ValueType::U32 => Array::U32(read_vec!(c, n, u32, what)),
        ValueType::I32 => Array::I32(read_vec!(c, n, i32, what)),
        ValueType::U64 => Array::U64(read_vec!(c, n, u64, what)),
        ValueType::I64 => Array::I64(read_vec!(c, n, i64, what)),
        ValueType::F32 => Array::F32(read_vec!(c, n, f32, what)),
        ValueType::F64 => Array::F64(read_vec!(c, n, f64, what)),
        ValueType::Bool => Array::Bool((0..n).map(|_| read_bool(c, what)).collect::<Result<_, _>>()?),
        ValueType::String => Array::String((0..n).map(|_| c.string(what)).collect::<Result<_, _>>()?),
        ValueType::Array => Array::Array((0..n).map(|_| read_array(c, what, depth + 1)).collect::<Result<_, _>>()?),
    })
}

pub(super) fn parse(b: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { b, pos: 0 };
    let magic = c.arr::<4>(&|| "magic".into())?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err(GgufError::BadVersion(1, " (GGUF v1 is obsolete; re-convert the model)")),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(GgufError::BadVersion(v, " (this looks like a big-endian file)"))
        }
        v => return Err(GgufError::BadVersion(v, "")),
    }
    // Each tensor info needs ≥ 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
    // each key/value ≥ 8 (key len) + 4 (type) + 1.
    let n_tensors = c.count(24, &|| "tensor count".into())?;
    let n_kv = c.count(13, &|| "metadata count".into())?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut seen = HashSet::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key_bytes = c.bytes_str(&|| format!("metadata key #{i}"))?;
        let key = std::str::from_utf8(key_bytes).map_err(|_| GgufError::KeyNotUtf8 { index: i })?.to_string();
        let code = c.u32(&|| format!("type of {key:?}"))?;
        let ty = ValueType::from_code(code).ok_or_else(|| GgufError::BadValueType { what: format!("metadata {key:?}"), ty: code })?;
        let value = read_value(&mut c, ty, &|| key.clone(), 0)?;
        if !seen.insert(key.clone()) {
            return Err(GgufError::DuplicateKey(key));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => {
            let a = v.as_u64().ok_or_else(|| GgufError::BadKey {
                key: "general.alignment".into(),
                msg: format!("expected an unsigned integer, found {}", v.type_name()),
            })?;
            if a == 0 || !a.is_power_of_two() {
                return Err(GgufError::BadAlignment(a));
            }
            a
        }
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name_bytes = c.bytes_str(&|| format!("name of tensor #{i}"))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let bad = |msg: String| GgufError::BadTensor { name: name.clone(), msg };
        let n_dims = c.u32(&|| format!("n_dims of tensor {name:?}"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(bad(format!("{n_dims} dimensions (must be 1..={MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for d in 0..n_dims {
            let ne = c.u64(&|| format!("dimension {d} of tensor {name:?}"))?;
            if ne > i64::MAX as u64 {
                return Err(bad(format!("dimension {d} = {ne} is negative as int64")));
            }
            dims.push(ne);
        }
        let code = c.u32(&|| format!("type of tensor {name:?}"))?;
        let ty = ggml_sys::safe::type_info(code).ok_or_else(|| bad(format!("unknown or retired ggml type {code}")))?;
        let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
        let n_el = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("shape {dims:?} overflows the element count")))?;
        if dims[0] % ty.block_size != 0 {
            return Err(bad(format!("row length {} is not a multiple of the {} block size {}", dims[0], ty.name, ty.block_size)));
        }
        let size = (n_el / ty.block_size)
            .checked_mul(ty.type_size)
            .ok_or_else(|| bad(format!("shape {dims:?} of type {} overflows the byte size", ty.name)))?;
        if offset % alignment != 0 {
            return Err(bad(format!("offset {offset} is not a multiple of the alignment {alignment}")));
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor(name));
        }
        tensors.push(TensorInfo { name, dims, ty, offset, size });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    // Even 0-byte tensors have their data at data_offset + offset: the data section
    // must start inside the file (or at its very end).
    if !tensors.is_empty() && data_offset > b.len() as u64 {
        return Err(GgufError::Truncated {
            what: format!("padding before the data section (alignment {alignment})"),
            at: header_end,
            need: data_offset - header_end,
            len: b.len() as u64,
        });
    }
    let data_len = (b.len() as u64).saturating_sub(data_offset);
    // Every tensor inside the data section, none overlapping another.
    let mut spans: Vec<(u64, u64, usize)> = tensors.iter().enumerate().map(|(i, t)| (t.offset, t.size, i)).collect();
    spans.sort_unstable();
    let mut prev_end = 0u64;
    let mut prev_name: Option<&str> = None;
    for &(off, size, i) in &spans {
        let t = &tensors[i];
        let end = off.checked_add(size).filter(|&e| e <= data_len).ok_or_else(|| GgufError::Truncated {
            what: format!("data of tensor {:?} ({} bytes at data offset {off})", t.name, size),
            at: data_offset.saturating_add(off),
            need: size,
            len: b.len() as u64,
        })?;
        if off < prev_end {
            return Err(GgufError::BadTensor {
                name: t.name.clone(),
                msg: format!("data at offset {off} overlaps tensor {:?}", prev_name.unwrap_or("?")),
            });
        }
        prev_end = end;
        prev_name = Some(&t.name);
    }
    Ok(Parsed { version, alignment, data_offset, metadata, tensors })
}
