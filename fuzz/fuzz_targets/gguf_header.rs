//! `GgufFile::from_bytes` on arbitrary bytes: an error or a file whose every value and
//! tensor can be read, never a panic, an overread or an allocation beyond the input's size.
#![no_main]
use clex::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else { return };
    assert!(matches!(f.version(), 2 | 3));
    assert!(f.alignment().is_power_of_two());
    assert!(f.data_offset() % f.alignment() == 0);
    for (k, v) in f.metadata() {
        std::hint::black_box(format!("{k} = {v}"));
        if let Some(a) = v.as_array() {
            std::hint::black_box((a.to_f32(), a.to_i64(), a.as_strings().map(|s| s.len())));
        }
        let _ = std::hint::black_box((f.get_u64(k), f.get_u32(k), f.get_i64(k), f.get_f32(k), f.get_bool(k), f.get_str(k)));
    }
    for t in f.tensors() {
        assert_eq!(f.tensor(&t.name).map(|u| u.offset), Some(t.offset));
        assert_eq!(f.tensor_data(t).len() as u64, t.size);
        assert_eq!(t.offset % f.alignment(), 0);
    }
});
