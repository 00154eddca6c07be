//! Backends (CPU, and GPUs when built in), buffers and the graph scheduler.

use super::tensor::Graph;
use crate::*;
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A compute backend (owns the ggml backend).
pub struct Backend {
    ptr: NonNull<ggml_backend>,
    is_cpu: bool,
}

// SAFETY: ggml backends may be moved between threads; we never use one from two
// threads at once (the owner holds `&mut` while computing).
unsafe impl Send for Backend {}
unsafe impl Sync for Backend {}

impl Backend {
    /// The CPU backend.
    pub fn cpu() -> Result<Self, String> {
        // SAFETY: plain constructor.
        let p = unsafe { ggml_backend_cpu_init() };
        Ok(Self { ptr: NonNull::new(p).ok_or("ggml_backend_cpu_init failed")?, is_cpu: true })
    }

    /// A backend for the device at `index` of [`devices`].
    pub fn device(index: usize) -> Result<Self, String> {
        let n = device_count();
        if index >= n {
            return Err(format!("no device #{index} ({n} devices)"));
        }
        // SAFETY: index checked; params may be null.
        let p = unsafe { ggml_backend_dev_init(ggml_backend_dev_get(index), std::ptr::null()) };
        let is_cpu = devices()[index].kind == DeviceKind::Cpu;
        Ok(Self { ptr: NonNull::new(p).ok_or_else(|| format!("initialising device #{index} failed"))?, is_cpu })
    }

    pub(crate) fn raw(&self) -> ggml_backend_t {
        self.ptr.as_ptr()
    }

    /// The backend's name ("CPU", "Vulkan0", "CUDA0", …).
    pub fn name(&self) -> String {
        // SAFETY: valid backend.
        cstr(unsafe { ggml_backend_name(self.raw()) })
    }

    /// Whether this is the CPU backend.
    pub fn is_cpu(&self) -> bool {
        self.is_cpu
    }

    /// Whether this backend can hold `w` and run what the graph does with it: the
    /// weight itself (devices refuse tensors above their largest buffer, e.g. a 144 MB
    /// output matrix on a driver with 128 MiB storage buffers) and, for
    /// [`super::WeightUse::MulMat`], a `mul_mat` with a 512-row F32 batch. Weights it
    /// refuses stay on the CPU, as llama.cpp does.
    pub fn supports_weight(&self, w: super::Tensor<'_>, usage: super::WeightUse) -> bool {
        let ne = w.ne();
        // SAFETY: a no_alloc scratch context for three probe tensors (metadata only),
        // freed before returning; the backend only inspects them.
        unsafe {
            let ctx = ggml_init(ggml_init_params { mem_size: ggml_tensor_overhead() * 8, mem_buffer: std::ptr::null_mut(), no_alloc: true });
            if ctx.is_null() {
                return false;
            }
            let a = ggml_new_tensor(ctx, w.ty(), 4, ne.as_ptr());
            let mut ok = ggml_backend_supports_op(self.raw(), a);
            if ok && usage == super::WeightUse::MulMat {
                let b = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, ne[0], 512, ne[2], ne[3]);
                ok = ggml_backend_supports_op(self.raw(), ggml_mul_mat(ctx, a, b));
            }
            ggml_free(ctx);
            ok
        }
    }

    /// Threads for the CPU backend (ignored by others).
    pub fn set_threads(&self, n: usize) {
        if self.is_cpu {
            // SAFETY: valid CPU backend.
            unsafe { ggml_backend_cpu_set_n_threads(self.raw(), n.max(1) as i32) }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: owned backend, freed once.
        unsafe { ggml_backend_free(self.raw()) }
    }
}

/// What kind of device ggml reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Accelerator,
    Other,
}

/// A device in ggml's registry.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub index: usize,
    pub name: String,
    pub description: String,
    pub kind: DeviceKind,
    pub memory_free: usize,
    pub memory_total: usize,
}

/// The CPU backend's build and machine features as ggml reports them (the list llama.cpp
/// prints as its system info: `SSE3 = 1 | AVX2 = 1 | … | AMX_INT8 = 1 | REPACK = 1`):
/// what this ggml was compiled with and the CPU offers.
pub fn cpu_features() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // SAFETY: the CPU registry is static; "ggml_backend_get_features" is documented to be
    // a `ggml_backend_get_features_t`, returning an array ended by a null name, of static
    // strings.
    unsafe {
        let reg = ggml_backend_cpu_reg();
        let f = ggml_backend_reg_get_proc_address(reg, c"ggml_backend_get_features".as_ptr());
        if f.is_null() {
            return out;
        }
        let f: unsafe extern "C" fn(ggml_backend_reg_t) -> *mut ggml_backend_feature = std::mem::transmute(f);
        let mut p = f(reg);
        while !p.is_null() && !(*p).name.is_null() {
            out.push((cstr((*p).name), cstr((*p).value)));
            p = p.add(1);
        }
    }
    out
}

/// Number of devices ggml knows (CPU included).
pub fn device_count() -> usize {
    // SAFETY: plain query.
    unsafe { ggml_backend_dev_count() }
}

/// Every device ggml knows.
pub fn devices() -> Vec<DeviceInfo> {
    (0..device_count())
        .map(|i| {
            // SAFETY: index in range; out-pointers are valid locals.
            unsafe {
                let d = ggml_backend_dev_get(i);
                let (mut free, mut total) = (0usize, 0usize);
                ggml_backend_dev_memory(d, &mut free, &mut total);
                let kind = match ggml_backend_dev_type(d) {
                    GGML_BACKEND_DEVICE_TYPE_CPU => DeviceKind::Cpu,
                    GGML_BACKEND_DEVICE_TYPE_GPU => DeviceKind::Gpu,
                    GGML_BACKEND_DEVICE_TYPE_IGPU => DeviceKind::IntegratedGpu,
                    GGML_BACKEND_DEVICE_TYPE_ACCEL => DeviceKind::Accelerator,
                    _ => DeviceKind::Other,
                };
                DeviceInfo {
                    index: i,
                    name: cstr(ggml_backend_dev_name(d)),
                    description: cstr(ggml_backend_dev_description(d)),
                    kind,
                    memory_free: free,
                    memory_total: total,
                }
            }
        })
        .collect()
}

/// A backend buffer (owned unless it views host memory owned elsewhere).
pub struct Buffer {
    ptr: NonNull<ggml_backend_buffer>,
    host_view: bool,
}

// SAFETY: buffers are plain memory regions; access is sequenced by their owners.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    /// A CPU buffer over `len` bytes at `ptr`, owned by the caller (who keeps it alive
    /// longer than the buffer).
    pub(crate) fn from_host_bytes(ptr: *const u8, len: usize) -> Result<Self, String> {
        // SAFETY: ggml only records the pointer; the caller keeps the memory alive.
        let b = unsafe { ggml_backend_cpu_buffer_from_ptr(ptr as *mut c_void, len) };
        let ptr = NonNull::new(b).ok_or("ggml_backend_cpu_buffer_from_ptr failed")?;
        // Weights: tell schedulers these are weights (for op offload decisions).
        // SAFETY: valid buffer.
        unsafe { ggml_backend_buffer_set_usage(ptr.as_ptr(), GGML_BACKEND_BUFFER_USAGE_WEIGHTS) };
        Ok(Self { ptr, host_view: true })
    }

    pub(crate) fn from_raw(b: *mut ggml_backend_buffer) -> Self {
        Self { ptr: NonNull::new(b).expect("null buffer"), host_view: false }
    }

    /// A new buffer of `size` bytes on `backend`.
    pub fn alloc(backend: &Backend, size: usize) -> Result<Self, String> {
        // SAFETY: valid backend.
        let b = unsafe { ggml_backend_buft_alloc_buffer(ggml_backend_get_default_buffer_type(backend.raw()), size) };
        NonNull::new(b)
            .map(|ptr| Self { ptr, host_view: false })
            .ok_or_else(|| format!("allocating {size} bytes on {} failed", backend.name()))
    }

    pub(crate) fn raw(&self) -> ggml_backend_buffer_t {
        self.ptr.as_ptr()
    }
    pub(crate) fn base(&self) -> *mut c_void {
        // SAFETY: valid buffer.
        unsafe { ggml_backend_buffer_get_base(self.raw()) }
    }
    /// Size in bytes.
    pub fn size(&self) -> usize {
        // SAFETY: valid buffer.
        unsafe { ggml_backend_buffer_get_size(self.raw()) }
    }
    /// Whether it views memory owned elsewhere (a mapped file).
    pub fn is_host_view(&self) -> bool {
        self.host_view
    }
    /// Fills the buffer with `byte`.
    pub fn clear(&self, byte: u8) {
        // SAFETY: valid buffer.
        unsafe { ggml_backend_buffer_clear(self.raw(), byte) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: freeing a from_ptr buffer does not free the viewed memory.
        unsafe { ggml_backend_buffer_free(self.raw()) }
    }
}

/// ggml's scheduler: splits a graph across backends (last one is the CPU fallback),
/// allocates intermediate memory and runs it.
pub struct Sched {
    ptr: NonNull<ggml_backend_sched>,
    backends: Vec<Backend>,
    /// The graph whose tensors the scheduler allocated last ([`Graph`] ids are unique),
    /// `None` after a reset or a reserve.
    allocated: Option<u64>,
}

// SAFETY: used from one thread at a time through `&mut`.
unsafe impl Send for Sched {}

impl Sched {
    /// A scheduler over `backends` (the CPU backend last) for graphs of up to
    /// `graph_size` nodes.
    pub fn new(backends: Vec<Backend>, graph_size: usize) -> Result<Self, String> {
        let mut raw: Vec<ggml_backend_t> = backends.iter().map(|b| b.raw()).collect();
        // SAFETY: `raw` holds valid backends owned by `backends`, which the scheduler keeps.
        let p = unsafe {
            ggml_backend_sched_new(raw.as_mut_ptr(), std::ptr::null_mut(), raw.len() as i32, graph_size, false, true)
        };
        Ok(Self { ptr: NonNull::new(p).ok_or("ggml_backend_sched_new failed")?, backends, allocated: None })
    }

    /// The backends, in priority order.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Threads for CPU backends.
    pub fn set_threads(&self, n: usize) {
        for b in &self.backends {
            b.set_threads(n);
        }
    }

    /// Reserves memory for the largest graph it will see.
    pub fn reserve(&mut self, g: &Graph) -> Result<(), String> {
        self.allocated = None;
        // SAFETY: valid scheduler and graph.
        if unsafe { ggml_backend_sched_reserve(self.ptr.as_ptr(), g.raw_graph()) } {
            Ok(())
        } else {
            Err("reserving compute memory failed".into())
        }
    }

    /// Allocates the graph's tensors; after this, inputs can be set.
    pub fn alloc(&mut self, g: &Graph) -> Result<(), String> {
        self.allocated = None;
        // SAFETY: valid scheduler and graph; reset first, as ggml requires between graphs.
        unsafe { ggml_backend_sched_reset(self.ptr.as_ptr()) };
        if unsafe { ggml_backend_sched_alloc_graph(self.ptr.as_ptr(), g.raw_graph()) } {
            self.allocated = Some(g.id());
            Ok(())
        } else {
            Err("allocating the compute graph failed (out of memory?)".into())
        }
    }

    /// Whether `g` is the graph allocated last, so that its tensors still have their
    /// memory: it can be computed again after new input values are set, without
    /// building or allocating anything (what llama.cpp calls graph reuse).
    pub fn is_allocated(&self, g: &Graph) -> bool {
        self.allocated == Some(g.id())
    }

    /// Runs `g`, allocating it first unless it is the graph allocated last (then the
    /// allocation, and the input values set since, are kept).
    pub fn compute(&mut self, g: &Graph) -> Result<(), String> {
        if !self.is_allocated(g) {
            self.alloc(g)?;
        }
        // SAFETY: `g` is the graph this scheduler allocated last (checked above), so its
        // splits refer to live tensors.
        let st = unsafe { ggml_backend_sched_graph_compute(self.ptr.as_ptr(), g.raw_graph()) };
        if st == GGML_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(format!("graph compute failed (status {st})"))
        }
    }

    /// Compute-buffer bytes used on backend `i`.
    pub fn buffer_size(&self, i: usize) -> usize {
        // SAFETY: valid scheduler and backend.
        unsafe { ggml_backend_sched_get_buffer_size(self.ptr.as_ptr(), self.backends[i].raw()) }
    }
}

impl Drop for Sched {
    fn drop(&mut self) {
        // SAFETY: freed once, before the backends (dropped after this).
        unsafe { ggml_backend_sched_free(self.ptr.as_ptr()) }
    }
}
