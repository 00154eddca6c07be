//! The CPU backend's "extra" buffer types: ggml keeps weights of some quantized
//! types (Q4_0, Q4_K, IQ4_NL, MXFP4, … depending on the CPU) in these buffers in an
//! interleaved ("repacked") layout that its faster matrix-product kernels read.
//! ggml converts a tensor as it is written into such a buffer, so the buffer holds a
//! copy, not a view of the file. llama.cpp puts every weight that one of these types
//! accepts there by default; [`super::TensorStore::bind_mapped_repack`] does the same.
//!
//! A repacked tensor can only be the first operand of `mul_mat` with F32 activations
//! (it cannot be read back, viewed or used by another op), hence [`WeightUse`].

use super::backend::Buffer;
use super::mmap::MappedFile;
use super::tensor::Tensor;
use crate::*;
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

/// How the graph uses a weight; decides whether an extra buffer type may hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightUse {
    /// Only ever the first operand (`a`) of `mul_mat` with F32 activations.
    MulMat,
    /// Anything else (row lookups, element-wise ops, RoPE factors, …), or both: the
    /// weight stays in a plain buffer.
    Other,
}

/// What [`super::TensorStore::bind_mapped_repack`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepackStats {
    /// Tensors moved into extra buffer types.
    pub tensors: usize,
    /// Bytes of the buffers they were copied into.
    pub bytes: usize,
    /// The extra buffer types used, with the number of tensors in each.
    pub buffer_types: Vec<(String, usize)>,
    /// Bytes of the file's pages handed back to the kernel after copying (whole
    /// pages inside the copied tensors; 0 where not supported).
    pub released_bytes: usize,
    /// Small weights that are not repacked (norms, biases: below 1 MiB each) copied into
    /// a plain CPU buffer so that their file pages can be released too: count and bytes.
    pub small_copied: (usize, usize),
}

/// Names of the CPU backend's extra buffer types, in the order they are tried
/// (e.g. `["CPU_REPACK"]`; empty when ggml was built without them).
pub fn cpu_extra_buffer_types() -> Vec<String> {
    let x = ExtraBufts::cpu();
    (0..x.len()).map(|i| x.name(i)).collect()
}

/// The CPU device's extra buffer types, each with a zero-size buffer of its type
/// (used to ask whether an op would accept a weight stored in it).
pub(crate) struct ExtraBufts {
    list: Vec<(ggml_backend_buffer_type_t, ggml_backend_dev_t, NonNull<ggml_backend_buffer>)>,
}

impl Drop for ExtraBufts {
    fn drop(&mut self) {
        for &(_, _, dummy) in &self.list {
            // SAFETY: dummy buffers made by ggml_backend_buft_alloc_buffer, freed once.
            unsafe { ggml_backend_buffer_free(dummy.as_ptr()) }
        }
    }
}

impl ExtraBufts {
    /// The extra buffer types of ggml's CPU device (none if there is no CPU device or
    /// it offers none), found the way llama.cpp finds them.
    pub(crate) fn cpu() -> Self {
        let mut list = Vec::new();
        // SAFETY: registry queries; the proc address, when present, has the documented
        // `ggml_backend_dev_get_extra_bufts_t` signature; the returned array is
        // NULL-terminated and static.
        unsafe {
            let dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
            if dev.is_null() {
                return Self { list };
            }
            let reg = ggml_backend_dev_backend_reg(dev);
            let name = c"ggml_backend_dev_get_extra_bufts";
            let f = ggml_backend_reg_get_proc_address(reg, name.as_ptr());
            if f.is_null() {
                return Self { list };
            }
            let f: ggml_backend_dev_get_extra_bufts_t = std::mem::transmute::<*mut c_void, ggml_backend_dev_get_extra_bufts_t>(f);
            let Some(f) = f else { return Self { list } };
            let mut p = f(dev);
            while !p.is_null() && !(*p).is_null() {
                let buft = *p;
                let bdev = ggml_backend_buft_get_device(buft);
                let bdev = if bdev.is_null() { dev } else { bdev };
                if let Some(dummy) = NonNull::new(ggml_backend_buft_alloc_buffer(buft, 0)) {
                    list.push((buft, bdev, dummy));
                }
                p = p.add(1);
            }
        }
        Self { list }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn name(&self, i: usize) -> String {
        // SAFETY: valid buffer type; ggml returns a static NUL-terminated name.
        let p = unsafe { ggml_backend_buft_name(self.list[i].0) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: see above.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// The first extra buffer type whose device would run `mul_mat(w, b)` (b: F32
    /// `[w.ne0, 512, w.ne2, w.ne3]`, as llama.cpp's probe) with `w` stored in it.
    /// Only the type and shape of `w` are looked at; `w` itself is not touched.
    pub(crate) fn for_weight(&self, w: Tensor<'_>, usage: WeightUse) -> Option<usize> {
        if usage != WeightUse::MulMat || self.list.is_empty() {
            return None;
        }
        let ne = w.ne();
        // SAFETY: a no_alloc scratch context sized for three tensors; the probe copy of
        // `w` gets the dummy buffer only for the duration of the query, and the context
        // is freed (which frees no buffer) before returning.
        unsafe {
            let mem = ggml_tensor_overhead() * 8;
            let ctx = ggml_init(ggml_init_params { mem_size: mem, mem_buffer: std::ptr::null_mut(), no_alloc: true });
            if ctx.is_null() {
                return None;
            }
            let a = ggml_new_tensor(ctx, w.ty(), 4, ne.as_ptr());
            let b = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, ne[0], 512, ne[2], ne[3]);
            let op = ggml_mul_mat(ctx, a, b);
            let mut found = None;
            for (i, &(_, dev, dummy)) in self.list.iter().enumerate() {
                (*a).buffer = dummy.as_ptr();
                let ok = ggml_backend_dev_supports_op(dev, op);
                (*a).buffer = std::ptr::null_mut();
                if ok {
                    found = Some(i);
                    break;
                }
            }
            ggml_free(ctx);
            found
        }
    }

    /// Allocates one buffer of extra type `i` for `tensors` (tensor, byte offset of
    /// its data in `map`) and writes each from the map (ggml converts the layout as it
    /// writes). Each tensor's file pages are released right after it is copied, so
    /// the peak resident size stays near the file's. The tensors must have no memory
    /// yet and their data must lie inside the map.
    pub(crate) fn alloc_upload(&self, i: usize, map: &MappedFile, tensors: &[(Tensor<'_>, usize)]) -> Result<Buffer, String> {
        upload(self.list[i].0, &self.name(i), map, tensors)
    }
}

/// Copies `tensors` (tensor, byte offset of its data in `map`) out of the map into one new
/// plain CPU buffer and releases their file pages: for the small weights that are not
/// repacked (norms, biases). Left mapped, each would keep a whole large page-cache folio
/// (up to 2 MiB on recent kernels) of the file in the resident set for a few KiB of data.
pub(crate) fn copy_to_cpu(map: &MappedFile, tensors: &[(Tensor<'_>, usize)]) -> Result<Buffer, String> {
    // SAFETY: the CPU buffer type is static.
    upload(unsafe { ggml_backend_cpu_buffer_type() }, "CPU", map, tensors)
}

/// Allocates one buffer of type `buft` for `tensors` and writes each from the map,
/// releasing its file pages right after (see [`ExtraBufts::alloc_upload`]).
fn upload(buft: ggml_backend_buffer_type_t, name: &str, map: &MappedFile, tensors: &[(Tensor<'_>, usize)]) -> Result<Buffer, String> {
    for &(t, off) in tensors {
        if t.is_allocated() {
            return Err("tensor bound twice".into());
        }
        if off.checked_add(t.nbytes()).is_none_or(|end| end > map.len()) {
            return Err(format!("tensor data ({} bytes at {off}) ends past the file", t.nbytes()));
        }
    }
    // SAFETY: valid buffer type and tensors.
    let align = unsafe { ggml_backend_buft_get_alignment(buft) }.max(1);
    let total: usize = tensors
        .iter()
        .map(|(t, _)| unsafe { ggml_backend_buft_get_alloc_size(buft, t.raw()) }.div_ceil(align) * align)
        .sum();
    // SAFETY: valid buffer type; a null result is handled.
    let raw = unsafe { ggml_backend_buft_alloc_buffer(buft, total + align) };
    if raw.is_null() {
        return Err(format!("allocating {} bytes of {name} failed", total + align));
    }
    let buf = Buffer::from_raw(raw);
    // SAFETY: valid buffer. Weights: the scheduler must not move ops off them.
    unsafe { ggml_backend_buffer_set_usage(buf.raw(), GGML_BACKEND_BUFFER_USAGE_WEIGHTS) };
    // SAFETY: the allocator places each tensor inside the buffer, which was sized
    // above for every tensor's padded allocation size plus the base alignment.
    let mut talloc = unsafe { ggml_tallocr_new(buf.raw()) };
    for &(t, off) in tensors {
        // SAFETY: see above; the tensor is unallocated (checked).
        let st = unsafe { ggml_tallocr_alloc(&mut talloc, t.raw()) };
        if st != GGML_STATUS_SUCCESS {
            return Err(format!("placing a tensor in {name} failed ({st})"));
        }
        let bytes = &map.bytes()[off..off + t.nbytes()];
        // SAFETY: whole-tensor write (the only kind these buffers accept) of exactly
        // the tensor's size.
        unsafe { ggml_backend_tensor_set(t.raw(), bytes.as_ptr() as *const c_void, 0, bytes.len()) };
        release_pages(map, &[(off, off + bytes.len())]);
    }
    Ok(buf)
}

/// Tells the kernel that the pages wholly inside the byte `ranges` of `map` are not
/// needed now (Linux `MADV_DONTNEED`): they leave the process's resident set and, if
/// read again, come back from the file unchanged. Returns the bytes advised. Sound
/// because a [`MappedFile`] is a private read-only file mapping that is never
/// written (no private copies whose contents could be lost).
pub(crate) fn release_pages(map: &MappedFile, ranges: &[(usize, usize)]) -> usize {
    let (base, len) = (map.as_ptr(), map.len());
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn madvise(addr: *mut c_void, len: usize, advice: std::os::raw::c_int) -> std::os::raw::c_int;
            fn getpagesize() -> std::os::raw::c_int;
        }
        const MADV_DONTNEED: std::os::raw::c_int = 4;
        // SAFETY: plain query.
        let page = unsafe { getpagesize() }.max(1) as usize;
        let mut r: Vec<(usize, usize)> = ranges.iter().copied().filter(|&(s, e)| s < e && e <= len).collect();
        r.sort_unstable();
        // Merge ranges separated by alignment padding only.
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (s, e) in r {
            match merged.last_mut() {
                Some(last) if s <= last.1 + 64 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let addr0 = base as usize;
        let mut done = 0;
        for (s, e) in merged {
            let a = (addr0 + s).div_ceil(page) * page;
            let b = (addr0 + e) / page * page;
            if b > a {
                // SAFETY: [a, b) lies inside the mapping (ranges checked against `len`);
                // dropping clean pages of a read-only file mapping loses nothing.
                if unsafe { madvise(a as *mut c_void, b - a, MADV_DONTNEED) } == 0 {
                    done += b - a;
                }
            }
        }
        done
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (base, len, ranges);
        0
    }
}
