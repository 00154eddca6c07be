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
        Ok(Self { ptr: NonNull::new(p).ok_or("ggml_backend_sched_new failed")?, backends })
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
        // SAFETY: valid scheduler and graph.
        if unsafe { ggml_backend_sched_reserve(self.ptr.as_ptr(), g.raw_graph()) } {
            Ok(())
        } else {
            Err("reserving compute memory failed".into())
        }
    }

    /// Allocates the graph's tensors; after this, inputs can be set.
    pub fn alloc(&mut self, g: &Graph) -> Result<(), String> {
        // SAFETY: valid scheduler and graph; reset first, as ggml requires between graphs.
        unsafe { ggml_backend_sched_reset(self.ptr.as_ptr()) };
        if unsafe { ggml_backend_sched_alloc_graph(self.ptr.as_ptr(), g.raw_graph()) } {
            Ok(())
        } else {
            Err("allocating the compute graph failed (out of memory?)".into())
        }
    }

    /// Runs the allocated graph.
    pub fn compute(&mut self, g: &Graph) -> Result<(), String> {
        // SAFETY: graph allocated by `alloc` on this scheduler.
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
