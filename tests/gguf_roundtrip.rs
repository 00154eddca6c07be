//! The GGUF writer against our reader: every value type, several tensor types, alignment,
//! streaming errors, and a llama.cpp-written file re-written from its parsed form.
mod common;
use clex::gguf::{Array, GgufError, GgufFile, GgufWriter, Value};

fn ty(name: &str) -> u32 {
    ggml_sys::safe::type_by_name(name).unwrap_or_else(|| panic!("ggml type {name}")).id
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn every_value() -> Vec<(String, Value)> {
    let s = |x: &str| x.to_string();
    vec![
        (s("t.u8"), Value::U8(250)),
        (s("t.i8"), Value::I8(-120)),
        (s("t.u16"), Value::U16(65000)),
        (s("t.i16"), Value::I16(-32000)),
        (s("t.u32"), Value::U32(4_000_000_000)),
        (s("t.i32"), Value::I32(-2_000_000_000)),
        (s("t.u64"), Value::U64(u64::MAX - 5)),
        (s("t.i64"), Value::I64(i64::MIN + 7)),
        (s("t.f32"), Value::F32(-1.5e-7)),
        (s("t.f64"), Value::F64(std::f64::consts::PI)),
        (s("t.bool.true"), Value::Bool(true)),
        (s("t.bool.false"), Value::Bool(false)),
        (s("t.string"), Value::String("héllo ▁wörld 🦙\n\0end".into())),
        (s("t.string.empty"), Value::String(String::new())),
        (s("t.arr.u8"), Value::Array(Array::U8(vec![0, 1, 255]))),
        (s("t.arr.i8"), Value::Array(Array::I8(vec![-128, 0, 127]))),
        (s("t.arr.u16"), Value::Array(Array::U16(vec![1, 65535]))),
        (s("t.arr.i16"), Value::Array(Array::I16(vec![-32768, 32767]))),
        (s("t.arr.u32"), Value::Array(Array::U32(vec![7, u32::MAX]))),
        (s("t.arr.i32"), Value::Array(Array::I32(vec![1, 2, 3, -4, 6]))),
        (s("t.arr.u64"), Value::Array(Array::U64(vec![u64::MAX]))),
        (s("t.arr.i64"), Value::Array(Array::I64(vec![i64::MIN, -1, 0]))),
        (s("t.arr.f32"), Value::Array(Array::F32(vec![0.0, -0.0, 1e30, f32::MIN_POSITIVE]))),
        (s("t.arr.f64"), Value::Array(Array::F64(vec![1e-300, -2.5]))),
        (s("t.arr.bool"), Value::Array(Array::Bool(vec![true, false, true]))),
        (
            s("t.arr.string"),
            Value::Array(Array::String(vec!["<s>".into(), String::new(), "▁the".into(), "日本".into()])),
        ),
        (s("t.arr.empty"), Value::Array(Array::F32(vec![]))),
        (
            s("t.arr.nested"),
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::String(vec!["a".into(), "bc".into()]),
                Array::Array(vec![Array::U8(vec![9]), Array::Bool(vec![])]),
                Array::F64(vec![]),
            ])),
        ),
        (s("t.arr.nested.empty"), Value::Array(Array::Array(vec![]))),
    ]
}

/// (name, type, dims) of a set of tensors of several types and shapes.
fn tensor_set() -> Vec<(&'static str, &'static str, Vec<u64>)> {
    vec![
        ("a.f32", "f32", vec![5]),
        ("b.f16", "f16", vec![3, 7]),
        ("c.q8_0", "q8_0", vec![64, 3]),
        ("d.q4_K", "q4_K", vec![256, 2, 1]),
        ("e.bf16", "bf16", vec![2, 2, 2, 3]),
        ("f.q6_K", "q6_K", vec![512, 1]),
        ("g.i32", "i32", vec![1]),
        ("h.q4_0", "q4_0", vec![32, 5]),
    ]
}

fn build(alignment: Option<u32>) -> (GgufWriter, Vec<Vec<u8>>) {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String("test".into())).unwrap();
    if let Some(a) = alignment {
        w.add_kv("general.alignment", Value::U32(a)).unwrap();
    }
    for (k, v) in every_value() {
        w.add_kv(k, v).unwrap();
    }
    let mut data = Vec::new();
    for (i, (name, t, dims)) in tensor_set().into_iter().enumerate() {
        let idx = w.add_tensor(name, ty(t), &dims).unwrap();
        assert_eq!(idx, i);
        data.push(bytes(i as u64 + 1, w.tensors()[idx].size as usize));
    }
    (w, data)
}

fn check_equal(f: &GgufFile, w: &GgufWriter, data: &[Vec<u8>], alignment: u64) {
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), alignment);
    assert_eq!(f.metadata(), w.metadata(), "metadata differs after the round trip");
    assert_eq!(f.tensors().len(), data.len());
    for ((t, (name, tname, dims)), d) in f.tensors().iter().zip(tensor_set()).zip(data) {
        assert_eq!(t.name, name);
        assert_eq!(t.ty.name, tname);
        assert_eq!(t.dims, dims);
        assert_eq!(t.offset % alignment, 0, "{name} offset {}", t.offset);
        assert_eq!(f.tensor_data(t), &d[..], "{name} data");
    }
    assert_eq!(f.data_offset() % alignment, 0);
    assert_eq!(f.data_offset(), w.data_offset());
    assert_eq!(f.bytes().len() as u64, w.file_len());
}

#[test]
fn every_value_type_and_tensor_type_round_trips_in_memory() {
    for alignment in [None, Some(64), Some(1), Some(4096)] {
        let (w, data) = build(alignment);
        let img = w.to_bytes(|i, out| out.write_all(&data[i])).unwrap();
        let f = GgufFile::from_bytes(img).unwrap();
        check_equal(&f, &w, &data, alignment.map_or(32, u64::from));
        // A second write of the parsed file reproduces it exactly.
        let w2 = GgufWriter::from_gguf(&f).unwrap();
        let img2 = w2.to_bytes(|i, out| out.write_all(f.tensor_data(&f.tensors()[i]))).unwrap();
        assert_eq!(img2, f.bytes());
    }
}

#[test]
fn streams_to_a_file_in_small_writes() {
    let (w, data) = build(None);
    let path = common::temp_path("roundtrip-stream.gguf");
    // Write each tensor a few bytes at a time, as a converter producing rows would.
    let n = w
        .write(&path, |i, out| {
            for ch in data[i].chunks(3) {
                out.write_all(ch)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    let f = GgufFile::open(&path).unwrap();
    check_equal(&f, &w, &data, 32);
    let mut partial = path.clone().into_os_string();
    partial.push(".partial");
    assert!(!std::path::Path::new(&partial).exists());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn wrong_data_sizes_fail_and_leave_no_file() {
    let (w, data) = build(None);
    let path = common::temp_path("roundtrip-short.gguf");
    let err = w.write(&path, |i, out| out.write_all(&data[i][..data[i].len() - 1])).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("a.f32"), "{err}");
    assert!(!path.exists());
    let err = w.write(&path, |i, out| {
        out.write_all(&data[i])?;
        out.write_all(&[0])
    });
    assert!(err.is_err());
    assert!(!path.exists());
    // A callback's own error comes through unchanged.
    let err = w.write(&path, |_, _| Err(std::io::Error::other("boom"))).unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert!(!path.exists());
}

#[test]
fn writer_rejects_bad_descriptions() {
    let mut w = GgufWriter::new();
    w.add_kv("a", Value::U8(1)).unwrap();
    assert_eq!(w.add_kv("a", Value::U8(2)), Err(GgufError::DuplicateKey("a".into())));
    assert!(matches!(w.add_kv("general.alignment", Value::U32(48)), Err(GgufError::BadAlignment(48))));
    assert!(matches!(w.add_kv("general.alignment", Value::F32(32.0)), Err(GgufError::BadKey { .. })));
    w.add_tensor("x", ty("f32"), &[4]).unwrap();
    assert!(matches!(w.add_tensor("x", ty("f32"), &[4]), Err(GgufError::DuplicateTensor(_))));
    assert!(matches!(w.add_tensor("q", ty("q8_0"), &[33, 2]), Err(GgufError::BadTensor { .. })));
    assert!(matches!(w.add_tensor("d", ty("f32"), &[1, 1, 1, 1, 1]), Err(GgufError::BadTensor { .. })));
    assert!(matches!(w.add_tensor("e", ty("f32"), &[]), Err(GgufError::BadTensor { .. })));
    assert!(matches!(w.add_tensor("t", 9999, &[4]), Err(GgufError::BadTensor { .. })));
    // set_kv replaces in place; alignment changes re-lay the tensors out.
    w.add_tensor("y", ty("f32"), &[3]).unwrap();
    assert_eq!(w.tensors()[1].offset, 32);
    w.set_kv("general.alignment", Value::U64(256)).unwrap();
    assert_eq!(w.tensors()[1].offset, 256);
    w.set_kv("a", Value::String("s".into())).unwrap();
    assert_eq!(w.metadata()[0], ("a".to_string(), Value::String("s".into())));
    assert!(w.remove_kv("general.alignment").is_some());
    assert_eq!(w.tensors()[1].offset, 32);
    assert!(w.remove_tensor("x"));
    assert_eq!(w.tensors()[0].offset, 0);
}

#[test]
fn rewrites_llama_cpp_fixture_byte_identically() {
    let path = common::fixtures().join("llama-2-tiny-random.gguf");
    let f = GgufFile::open(&path).unwrap();
    let w = GgufWriter::from_gguf(&f).unwrap();
    let out = common::temp_path("llama-2-tiny-rewritten.gguf");
    w.write(&out, |i, o| o.write_all(f.tensor_data(&f.tensors()[i]))).unwrap();
    let g = GgufFile::open(&out).unwrap();
    // Semantically identical …
    assert_eq!(g.metadata(), f.metadata());
    for (a, b) in f.tensors().iter().zip(g.tensors()) {
        assert_eq!((&a.name, &a.dims, a.ty, a.offset, a.size), (&b.name, &b.dims, b.ty, b.offset, b.size));
        assert_eq!(f.tensor_data(a), g.tensor_data(b));
    }
    // … and byte for byte.
    assert_eq!(g.bytes().len(), f.bytes().len());
    assert!(g.bytes() == f.bytes(), "re-written fixture differs from the original");
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn quantize_through_ggml() {
    use ggml_sys::safe::{dequantize, quantize};
    let n_per_row = 256;
    let src: Vec<f32> = (0..n_per_row * 3).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
    for (name, tol) in [
        ("f32", 0.0),
        ("f16", 2e-3),
        ("bf16", 2e-2),
        ("q8_0", 3e-2),
        ("q6_K", 6e-2),
        ("q4_K", 0.3),
        ("q4_0", 0.45),
        ("q5_0", 0.2),
    ] {
        let t = ty(name);
        let q = quantize(t, &src, n_per_row).unwrap();
        assert_eq!(q.len(), 3 * ggml_sys::safe::row_size(t, n_per_row as i64), "{name}");
        let back = dequantize(t, &q, src.len()).unwrap();
        let err = src.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err <= tol, "{name}: max error {err} > {tol}");
        // Misaligned output buffers work too.
        let mut buf = vec![0u8; q.len() + 1];
        ggml_sys::safe::quantize_into(t, &src, n_per_row, &mut buf[1..]).unwrap();
        assert_eq!(&buf[1..], &q[..], "{name} misaligned");
    }
    // Errors instead of ggml aborts.
    assert!(quantize(ty("q8_0"), &src, 100).unwrap_err().contains("block size"));
    assert!(quantize(ty("q8_0"), &src[..100], 64).unwrap_err().contains("whole rows"));
    assert!(quantize(ty("iq2_xxs"), &src, 256).unwrap_err().contains("importance matrix"));
    assert!(quantize(ty("q8_K"), &src, 256).is_err());
    assert!(quantize(12345, &src, 256).is_err());
    assert!(quantize(ty("q8_0"), &src, 0).is_err());
    assert_eq!(quantize(ty("q8_0"), &[], 32).unwrap(), Vec::<u8>::new());
}
