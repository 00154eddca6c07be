//! Tensor handles, tensor stores (weights, KV cache) and graph contexts.

use super::backend::{Backend, Buffer};
use super::mmap::MappedFile;
use super::repack::{copy_to_cpu, release_pages, ExtraBufts, RepackStats, WeightUse};
use crate::*;
use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

/// A handle to a ggml tensor that lives as long as `'a` (the store or graph that
/// made it). Copyable; reading its shape is safe; its data is reached only through
/// [`Tensor::set_bytes`]/[`Tensor::get_bytes`], which check sizes.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    ptr: NonNull<ggml_tensor>,
    _life: PhantomData<&'a ()>,
}

// SAFETY: a handle is an address; ggml tensors are plain structs that the wrapper
// mutates only through its own methods, which need the owning context or a
// `&mut` of the store.
unsafe impl Send for Tensor<'_> {}
unsafe impl Sync for Tensor<'_> {}

impl<'a> Tensor<'a> {
    fn new(ptr: *mut ggml_tensor) -> Self {
        Self { ptr: NonNull::new(ptr).expect("ggml returned a null tensor (out of context memory)"), _life: PhantomData }
    }
    pub(crate) fn raw(self) -> *mut ggml_tensor {
        self.ptr.as_ptr()
    }
    fn inner(&self) -> &ggml_tensor {
        // SAFETY: the tensor lives for 'a, which outlives `self`.
        unsafe { self.ptr.as_ref() }
    }
    /// Elements per dimension (ggml order; unused dims are 1).
    pub fn ne(&self) -> [i64; 4] {
        self.inner().ne
    }
    /// Strides in bytes per dimension.
    pub fn nb(&self) -> [usize; 4] {
        self.inner().nb
    }
    /// The tensor's name.
    pub fn name(&self) -> String {
        let n = &self.inner().name;
        let bytes: Vec<u8> = n.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    /// The ggml type id.
    pub fn ty(&self) -> u32 {
        self.inner().type_
    }
    /// Total elements.
    pub fn n_elements(&self) -> i64 {
        self.ne().iter().product()
    }
    /// Bytes of data.
    pub fn nbytes(&self) -> usize {
        // SAFETY: valid tensor.
        unsafe { ggml_nbytes(self.raw()) }
    }
    /// The address of the tensor's data (0 before it has memory), for alignment checks.
    pub fn data_addr(&self) -> usize {
        self.inner().data as usize
    }
    /// Whether the tensor has memory (a buffer or data pointer).
    pub fn is_allocated(&self) -> bool {
        !self.inner().buffer.is_null() || !self.inner().data.is_null()
    }
    /// The name of the buffer type that holds the tensor's data ("CPU", "CPU_REPACK",
    /// "AMX", "Vulkan0", ...), or `None` before it has a buffer (or for a bare data pointer).
    pub fn buffer_type_name(&self) -> Option<String> {
        let buf = self.inner().buffer;
        if buf.is_null() {
            return None;
        }
        // SAFETY: a tensor's buffer lives as long as the tensor is usable; buffer types
        // and their names are static in ggml.
        let name = unsafe { CStr::from_ptr(ggml_backend_buft_name(ggml_backend_buffer_get_type(buf))) };
        Some(name.to_string_lossy().into_owned())
    }
    /// Copies `bytes` into the tensor at byte `offset` (any backend).
    pub fn set_bytes(&self, offset: usize, bytes: &[u8]) {
        assert!(self.is_allocated(), "tensor has no memory yet");
        assert!(offset + bytes.len() <= self.nbytes(), "write past the end of the tensor");
        // SAFETY: bounds checked above; ggml copies into the tensor's buffer.
        unsafe { ggml_backend_tensor_set(self.raw(), bytes.as_ptr() as *const c_void, offset, bytes.len()) }
    }
    /// Copies the tensor's bytes from `offset` into `out` (any backend).
    pub fn get_bytes(&self, offset: usize, out: &mut [u8]) {
        assert!(self.is_allocated(), "tensor has no memory yet");
        assert!(offset + out.len() <= self.nbytes(), "read past the end of the tensor");
        // SAFETY: bounds checked above.
        unsafe { ggml_backend_tensor_get(self.raw(), out.as_mut_ptr() as *mut c_void, offset, out.len()) }
    }
    /// Writes f32 values (the tensor must be F32).
    pub fn set_f32(&self, vals: &[f32]) {
        assert_eq!(self.ty(), GGML_TYPE_F32);
        self.set_bytes(0, as_bytes(vals));
    }
    /// Writes i32 values (the tensor must be I32).
    pub fn set_i32(&self, vals: &[i32]) {
        assert_eq!(self.ty(), GGML_TYPE_I32);
        self.set_bytes(0, as_bytes(vals));
    }
    /// Writes i64 values (the tensor must be I64).
    pub fn set_i64(&self, vals: &[i64]) {
        assert_eq!(self.ty(), GGML_TYPE_I64);
        self.set_bytes(0, as_bytes(vals));
    }
    /// Writes f16 values given as raw bits (the tensor must be F16).
    pub fn set_f16_bits(&self, vals: &[u16]) {
        assert_eq!(self.ty(), GGML_TYPE_F16);
        self.set_bytes(0, as_bytes(vals));
    }
    /// Reads `out.len()` f32 values from element `start` (the tensor must be F32 and contiguous).
    pub fn get_f32(&self, start: usize, out: &mut [f32]) {
        assert_eq!(self.ty(), GGML_TYPE_F32);
        // Straight into `out` (f32 is plain data; ggml stores native-endian floats).
        self.get_bytes(start * 4, as_bytes_mut(out));
    }
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data numbers, any bit pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn as_bytes_mut(v: &mut [f32]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid f32 and a valid u8; same length in bytes.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// Cache-line size the compute tensors are kept aligned to (see [`Graph::input`]).
const CACHE_LINE: usize = 64;

fn new_ctx(n_tensors: usize, extra: usize) -> NonNull<ggml_context> {
    // SAFETY: sizes from ggml's own overhead functions; no_alloc contexts hold only metadata.
    let mem = unsafe { ggml_tensor_overhead() } * n_tensors + extra + 1024;
    let p = unsafe { ggml_init(ggml_init_params { mem_size: mem, mem_buffer: std::ptr::null_mut(), no_alloc: true }) };
    NonNull::new(p).expect("ggml_init failed")
}

fn checked_dims(dims: &[i64]) -> (i32, [i64; 4]) {
    assert!((1..=4).contains(&dims.len()), "1 to 4 dims");
    assert!(dims.iter().all(|&d| d >= 0), "negative dim");
    let mut ne = [1i64; 4];
    ne[..dims.len()].copy_from_slice(dims);
    (dims.len() as i32, ne)
}

fn set_name(t: *mut ggml_tensor, name: &str) {
    let c = CString::new(name.replace('\0', "?")).unwrap();
    // SAFETY: ggml copies (and truncates) the name into the tensor.
    unsafe { ggml_set_name(t, c.as_ptr()) };
}

/// Plain (not repacked) weights below this size are copied out of the file map when
/// others are repacked ([`TensorStore::bind_mapped_repack`]).
const SMALL_WEIGHT: usize = 1 << 20;

/// A set of long-lived tensors (weights, a KV cache) in one metadata context, bound
/// to backend memory: memory-mapped file bytes (zero-copy) or buffers allocated on a
/// backend. Immutable shapes after creation; `Send + Sync`.
pub struct TensorStore {
    ctx: NonNull<ggml_context>,
    tensors: Vec<NonNull<ggml_tensor>>,
    capacity: usize,
    buffers: Vec<Buffer>,
    _maps: Vec<Arc<MappedFile>>,
}

// SAFETY: after building, the store's metadata is only read; tensor contents are
// written by graph computations that the owner sequences through `&mut`.
unsafe impl Send for TensorStore {}
unsafe impl Sync for TensorStore {}

impl TensorStore {
    /// A store with room for `capacity` tensors.
    pub fn new(capacity: usize) -> Self {
        Self { ctx: new_ctx(capacity, 0), tensors: Vec::new(), capacity, buffers: Vec::new(), _maps: Vec::new() }
    }

    /// Declares a tensor (no memory yet); returns its index.
    pub fn add(&mut self, name: &str, ty: u32, dims: &[i64]) -> usize {
        assert!(self.tensors.len() < self.capacity, "tensor store is full");
        assert!(super::type_info(ty).is_some(), "bad ggml type {ty}");
        let (n, ne) = checked_dims(dims);
        // SAFETY: valid context with room (checked), dims checked.
        let t = unsafe { ggml_new_tensor(self.ctx.as_ptr(), ty, n, ne.as_ptr()) };
        let t = NonNull::new(t).expect("ggml_new_tensor failed");
        set_name(t.as_ptr(), name);
        self.tensors.push(t);
        self.tensors.len() - 1
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor at `index`.
    pub fn get(&self, index: usize) -> Tensor<'_> {
        Tensor::new(self.tensors[index].as_ptr())
    }

    /// Binds tensors to bytes of a memory-mapped file without copying: `placements`
    /// pairs a tensor index with the byte offset of its data in the file. Every
    /// range is checked to lie inside the file.
    pub fn bind_mapped(&mut self, map: Arc<MappedFile>, placements: &[(usize, usize)]) -> Result<(), String> {
        if placements.is_empty() {
            return Ok(());
        }
        let buf = Buffer::from_host_bytes(map.as_ptr(), map.len())?;
        for &(i, off) in placements {
            self.check_placement(&map, i, off)?;
            let t = self.get(i);
            // SAFETY: the address lies inside the buffer (checked); the buffer and the
            // map it points into are kept alive by `self`.
            let st = unsafe { ggml_backend_tensor_alloc(buf.raw(), t.raw(), (map.as_ptr() as *mut u8).add(off) as *mut c_void) };
            if st != GGML_STATUS_SUCCESS {
                return Err(format!("ggml_backend_tensor_alloc failed ({st})"));
            }
        }
        self.buffers.push(buf);
        self._maps.push(map);
        Ok(())
    }

    /// Like [`TensorStore::bind_mapped`], but does what llama.cpp does on the CPU by
    /// default: each tensor marked [`WeightUse::MulMat`] that one of the CPU backend's
    /// extra buffer types accepts (ggml's repacked layouts, chosen per tensor with a
    /// probe `mul_mat` and the device's `supports_op`, first type wins) is allocated
    /// in that buffer type and written from the map, which repacks it; every other
    /// tensor is bound zero-copy to the map. The file pages of the copied tensors are
    /// then handed back to the kernel (see [`RepackStats::released_bytes`]).
    pub fn bind_mapped_repack(
        &mut self,
        map: Arc<MappedFile>,
        placements: &[(usize, usize, WeightUse)],
    ) -> Result<RepackStats, String> {
        for &(i, off, _) in placements {
            self.check_placement(&map, i, off)?;
        }
        let extra = ExtraBufts::cpu();
        let mut groups: Vec<Vec<(usize, usize)>> = vec![Vec::new(); extra.len()];
        let mut plain = Vec::new();
        for &(i, off, usage) in placements {
            match extra.for_weight(self.get(i), usage) {
                Some(b) => groups[b].push((i, off)),
                None => plain.push((i, off)),
            }
        }
        let mut stats = RepackStats::default();
        let mut ranges = Vec::new();
        // Small plain weights are copied out of the map once something is repacked, so
        // the map's pages stay released around them (see `copy_to_cpu`).
        let (small, plain): (Vec<_>, Vec<_>) = if groups.iter().any(|g| !g.is_empty()) {
            plain.into_iter().partition(|&(i, _)| self.get(i).nbytes() < SMALL_WEIGHT)
        } else {
            (Vec::new(), plain)
        };
        self.bind_mapped(map.clone(), &plain)?;
        if !small.is_empty() {
            let list: Vec<(Tensor<'_>, usize)> = small.iter().map(|&(i, off)| (self.get(i), off)).collect();
            let buf = copy_to_cpu(&map, &list)?;
            ranges.extend(list.iter().map(|&(t, off)| (off, off + t.nbytes())));
            stats.small_copied = (list.len(), list.iter().map(|(t, _)| t.nbytes()).sum());
            self.buffers.push(buf);
        }
        for (b, group) in groups.iter().enumerate() {
            if group.is_empty() {
                continue;
            }
            let list: Vec<(Tensor<'_>, usize)> = group.iter().map(|&(i, off)| (self.get(i), off)).collect();
            let buf = extra.alloc_upload(b, &map, &list)?;
            ranges.extend(list.iter().map(|&(t, off)| (off, off + t.nbytes())));
            stats.tensors += group.len();
            stats.bytes += buf.size();
            stats.buffer_types.push((extra.name(b), group.len()));
            self.buffers.push(buf);
        }
        if stats.tensors + stats.small_copied.0 > 0 {
            // Each tensor's pages went back as it was copied; this pass (over merged
            // ranges) also catches the pages that adjacent copied tensors share.
            stats.released_bytes = release_pages(&map, &ranges);
            self._maps.push(map);
        }
        Ok(stats)
    }

    fn check_placement(&self, map: &MappedFile, i: usize, off: usize) -> Result<(), String> {
        if i >= self.tensors.len() {
            return Err(format!("no tensor #{i}"));
        }
        let t = self.get(i);
        let end = off.checked_add(t.nbytes()).ok_or("offset overflow")?;
        if end > map.len() {
            return Err(format!("tensor #{i} data ({} bytes at {off}) ends past the file ({} bytes)", t.nbytes(), map.len()));
        }
        if t.is_allocated() {
            return Err(format!("tensor #{i} bound twice"));
        }
        Ok(())
    }

    /// Allocates memory on `backend` for every tensor not yet bound, in one buffer.
    pub fn alloc_rest(&mut self, backend: &Backend) -> Result<usize, String> {
        // SAFETY: valid context and backend; ggml allocates only unallocated tensors.
        let b = unsafe { ggml_backend_alloc_ctx_tensors(self.ctx.as_ptr(), backend.raw()) };
        if b.is_null() {
            return Err("allocating tensor memory failed (out of memory?)".into());
        }
        let buf = Buffer::from_raw(b);
        let size = buf.size();
        self.buffers.push(buf);
        Ok(size)
    }

    /// Allocates memory for the tensors `indices` in one new buffer on `backend`, with
    /// the alignment and per-tensor allocation size its buffer type asks for (device
    /// buffers may pad quantized rows).
    pub fn alloc_some(&mut self, backend: &Backend, indices: &[usize]) -> Result<usize, String> {
        // SAFETY: valid backend; buffer-type queries only read.
        let buft = unsafe { ggml_backend_get_default_buffer_type(backend.raw()) };
        let align = unsafe { ggml_backend_buft_get_alignment(buft) }.max(1);
        // SAFETY: valid buffer type and tensors of this store.
        let size_of = |t: Tensor<'_>| unsafe { ggml_backend_buft_get_alloc_size(buft, t.raw()) }.div_ceil(align) * align;
        let total: usize = indices.iter().map(|&i| size_of(self.get(i))).sum();
        if total == 0 {
            return Ok(0);
        }
        let buf = Buffer::alloc(backend, total + align)?;
        let base = buf.base() as usize;
        let mut off = base.div_ceil(align) * align - base;
        for &i in indices {
            let t = self.get(i);
            // SAFETY: `off + alloc size` stays inside the buffer by construction of `total`.
            let st = unsafe { ggml_backend_tensor_alloc(buf.raw(), t.raw(), (base + off) as *mut c_void) };
            if st != GGML_STATUS_SUCCESS {
                return Err(format!("ggml_backend_tensor_alloc failed ({st})"));
            }
            off += size_of(t);
        }
        let size = buf.size();
        self.buffers.push(buf);
        Ok(size)
    }

    /// Fills every buffer the store allocated (not mapped ones) with `byte`.
    pub fn clear(&mut self, byte: u8) {
        let n_mapped = self._maps.len();
        let _ = n_mapped;
        for b in &self.buffers {
            if !b.is_host_view() {
                b.clear(byte);
            }
        }
    }

    /// Bytes of memory the store's own buffers hold (mapped files excluded).
    pub fn allocated_bytes(&self) -> usize {
        self.buffers.iter().filter(|b| !b.is_host_view()).map(|b| b.size()).sum()
    }
}

impl Drop for TensorStore {
    fn drop(&mut self) {
        self.buffers.clear();
        // SAFETY: the context was created by ggml_init and is freed once.
        unsafe { ggml_free(self.ctx.as_ptr()) }
    }
}

/// A graph under construction, with its own metadata context. A graph can be kept and
/// computed again with new input values (see [`super::Sched::compute`]): its inputs and
/// outputs are found again by name with [`Graph::find`].
pub struct Graph {
    ctx: NonNull<ggml_context>,
    graph: NonNull<ggml_cgraph>,
    /// Unique per graph (the scheduler remembers which graph it allocated).
    id: u64,
    /// Inputs and outputs made through [`Graph::input`] / [`Graph::output`], by name.
    named: std::cell::RefCell<Vec<(String, NonNull<ggml_tensor>)>>,
}

// SAFETY: a graph and its context are plain memory owned by this value alone; moving it
// to another thread moves that ownership. (Not `Sync`: building it mutates the context.)
unsafe impl Send for Graph {}

static NEXT_GRAPH_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: created by ggml_init; the graph lives inside the context.
        unsafe { ggml_free(self.ctx.as_ptr()) }
    }
}

macro_rules! unary {
    ($(#[$m:meta])* $name:ident => $f:ident) => {
        $(#[$m])*
        pub fn $name<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
            // SAFETY: valid context and tensor.
            Tensor::new(unsafe { $f(self.ctx.as_ptr(), a.raw()) })
        }
    };
}
macro_rules! binary {
    ($(#[$m:meta])* $name:ident => $f:ident) => {
        $(#[$m])*
        pub fn $name<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
            // SAFETY: valid context and tensors; ggml checks shapes (abort on misuse).
            Tensor::new(unsafe { $f(self.ctx.as_ptr(), a.raw(), b.raw()) })
        }
    };
}

/// The scalar arguments of `ggml_rope_ext`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeArgs {
    pub n_dims: i32,
    pub mode: i32,
    pub n_ctx_orig: i32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
}

impl Graph {
    /// A graph with room for `max_nodes` nodes.
    pub fn new(max_nodes: usize) -> Self {
        // SAFETY: overhead from ggml itself.
        let extra = unsafe { ggml_graph_overhead_custom(max_nodes, false) };
        let ctx = new_ctx(max_nodes, extra);
        // SAFETY: context sized for the graph above.
        let g = unsafe { ggml_new_graph_custom(ctx.as_ptr(), max_nodes, false) };
        Self {
            ctx,
            graph: NonNull::new(g).expect("ggml_new_graph_custom failed"),
            id: NEXT_GRAPH_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            named: Default::default(),
        }
    }

    pub(crate) fn raw_graph(&self) -> *mut ggml_cgraph {
        self.graph.as_ptr()
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The input or output named `name` (made with [`Graph::input`] or passed to
    /// [`Graph::output`]), if any.
    pub fn find(&self, name: &str) -> Option<Tensor<'_>> {
        self.named.borrow().iter().find(|(n, _)| n == name).map(|&(_, t)| Tensor::new(t.as_ptr()))
    }

    /// A new input tensor (data set after the scheduler allocates the graph).
    ///
    /// The compute allocator aligns tensors only to the buffer type's alignment (32 bytes
    /// on the CPU), so one small input (a single output id, a 1-token batch's position)
    /// shifts every tensor allocated after it off the 64-byte cache-line grid, and then
    /// each 64-byte vector load and store of ggml's kernels straddles two lines (AMX
    /// Q8_0 matrix products ran 1.3-1.6x slower that way). An input whose size is not a
    /// multiple of [`CACHE_LINE`] is therefore made as a padded 1-D tensor and returned
    /// as a contiguous view of the requested shape; [`Graph::find`] gives the padded
    /// tensor, whose prefix holds the values.
    pub fn input(&self, name: &str, ty: u32, dims: &[i64]) -> Tensor<'_> {
        let (n, ne) = checked_dims(dims);
        // SAFETY: valid context; dims checked.
        let t = unsafe { ggml_new_tensor(self.ctx.as_ptr(), ty, n, ne.as_ptr()) };
        // SAFETY: valid tensor and type.
        let (nbytes, blck, tsize) = unsafe { (ggml_nbytes(t), ggml_blck_size(ty), ggml_type_size(ty)) };
        if nbytes % CACHE_LINE == 0 || blck != 1 || tsize == 0 || CACHE_LINE % tsize != 0 {
            set_name(t, name);
            // SAFETY: valid tensor.
            unsafe { ggml_set_input(t) };
            let t = Tensor::new(t);
            self.named.borrow_mut().push((name.to_string(), t.ptr));
            return t;
        }
        let padded = (nbytes.div_ceil(CACHE_LINE) * CACHE_LINE / tsize) as i64;
        // SAFETY: valid context, tensor and sizes; the view lies inside the padded
        // tensor (its nbytes ≤ the padded size) with `t`'s contiguous strides.
        unsafe {
            let full = ggml_new_tensor_1d(self.ctx.as_ptr(), ty, padded);
            set_name(full, name);
            ggml_set_input(full);
            let v = ggml_view_4d(self.ctx.as_ptr(), full, ne[0], ne[1], ne[2], ne[3], (*t).nb[1], (*t).nb[2], (*t).nb[3], 0);
            set_name(v, &format!("{name} (view)"));
            self.named.borrow_mut().push((name.to_string(), NonNull::new(full).expect("ggml_new_tensor_1d failed")));
            Tensor::new(v)
        }
    }

    /// Marks `t` as an output and adds it (and what it depends on) to the graph; it can be
    /// found again by its name (see [`Graph::find`]).
    pub fn output(&self, t: Tensor<'_>) {
        // SAFETY: valid tensor and graph.
        unsafe {
            ggml_set_output(t.raw());
            ggml_build_forward_expand(self.graph.as_ptr(), t.raw());
        }
        self.named.borrow_mut().push((t.name(), t.ptr));
    }

    /// Adds `t` (and what it depends on) to the graph, e.g. a cache write.
    pub fn expand(&self, t: Tensor<'_>) {
        // SAFETY: valid tensor and graph.
        unsafe { ggml_build_forward_expand(self.graph.as_ptr(), t.raw()) }
    }

    /// Number of nodes so far.
    pub fn n_nodes(&self) -> usize {
        // SAFETY: valid graph.
        unsafe { ggml_graph_n_nodes(self.graph.as_ptr()) as usize }
    }

    /// Names a tensor (for debugging and scheduling).
    pub fn name(&self, t: Tensor<'_>, name: &str) {
        set_name(t.raw(), name);
    }

    binary!(/// `a @ b` in ggml's convention (result ne = [a.ne1, b.ne1, …]).
        mul_mat => ggml_mul_mat);
    binary!(/// Element-wise sum with broadcasting of `b`.
        add => ggml_add);
    binary!(/// Element-wise product with broadcasting of `b`.
        mul => ggml_mul);
    binary!(/// Rows of `a` picked by the I32 indices in `b`.
        get_rows => ggml_get_rows);
    binary!(/// `silu(a) * b`.
        swiglu => ggml_swiglu_split);
    binary!(/// Copies `a` into `b` (converting type); returns the view of `b`.
        cpy => ggml_cpy);
    unary!(/// A contiguous copy.
        cont => ggml_cont);
    unary!(/// Transposes the first two dims (a view).
        transpose => ggml_transpose);
    unary!(/// SiLU.
        silu => ggml_silu);

    /// Writes the rows of `src` (F32) into rows `idx` (I64, one per row of `src`) of
    /// `dst`, converting to `dst`'s type; returns the view of `dst`. Row indices must lie
    /// inside `dst` (ggml checks them while computing) and not repeat.
    pub fn set_rows<'a>(&'a self, dst: Tensor<'a>, src: Tensor<'a>, idx: Tensor<'a>) -> Tensor<'a> {
        assert_eq!(dst.ne()[0], src.ne()[0], "set_rows: row lengths differ");
        assert_eq!(idx.ne()[0], src.ne()[1], "set_rows: one index per source row");
        assert!(idx.ty() == GGML_TYPE_I64 || idx.ty() == GGML_TYPE_I32, "set_rows: integer indices");
        // SAFETY: valid context and tensors; shapes checked above, ggml checks the rest.
        Tensor::new(unsafe { ggml_set_rows(self.ctx.as_ptr(), dst.raw(), src.raw(), idx.raw()) })
    }

    /// RMS norm over rows.
    pub fn rms_norm<'a>(&'a self, a: Tensor<'a>, eps: f32) -> Tensor<'a> {
        // SAFETY: valid context and tensor.
        Tensor::new(unsafe { ggml_rms_norm(self.ctx.as_ptr(), a.raw(), eps) })
    }
    /// Multiplies by a scalar.
    pub fn scale<'a>(&'a self, a: Tensor<'a>, s: f32) -> Tensor<'a> {
        // SAFETY: valid context and tensor.
        Tensor::new(unsafe { ggml_scale(self.ctx.as_ptr(), a.raw(), s) })
    }
    /// Converts to another type.
    pub fn cast<'a>(&'a self, a: Tensor<'a>, ty: u32) -> Tensor<'a> {
        // SAFETY: valid context and tensor.
        Tensor::new(unsafe { ggml_cast(self.ctx.as_ptr(), a.raw(), ty) })
    }
    /// Reshapes (the tensor must be contiguous).
    pub fn reshape<'a>(&'a self, a: Tensor<'a>, dims: &[i64]) -> Tensor<'a> {
        let (n, ne) = checked_dims(dims);
        assert_eq!(ne.iter().product::<i64>(), a.n_elements(), "reshape changes the element count");
        // SAFETY: element count checked; ggml asserts contiguity.
        Tensor::new(unsafe {
            match n {
                1 => ggml_reshape_1d(self.ctx.as_ptr(), a.raw(), ne[0]),
                2 => ggml_reshape_2d(self.ctx.as_ptr(), a.raw(), ne[0], ne[1]),
                3 => ggml_reshape_3d(self.ctx.as_ptr(), a.raw(), ne[0], ne[1], ne[2]),
                _ => ggml_reshape_4d(self.ctx.as_ptr(), a.raw(), ne[0], ne[1], ne[2], ne[3]),
            }
        })
    }
    /// A strided view: `ne` elements, byte strides `nb` (for dims 1..), byte `offset`.
    /// The view must stay inside the source tensor.
    pub fn view<'a>(&'a self, a: Tensor<'a>, ne: [i64; 4], nb: [usize; 3], offset: usize) -> Tensor<'a> {
        let row = {
            // SAFETY: pure function of type and count.
            unsafe { ggml_row_size(a.ty(), ne[0]) }
        };
        let last = offset
            + row
            + (ne[1] - 1).max(0) as usize * nb[0]
            + (ne[2] - 1).max(0) as usize * nb[1]
            + (ne[3] - 1).max(0) as usize * nb[2];
        assert!(last <= a.nbytes(), "view past the end of its source");
        // SAFETY: bounds checked above.
        Tensor::new(unsafe {
            ggml_view_4d(self.ctx.as_ptr(), a.raw(), ne[0], ne[1], ne[2], ne[3], nb[0], nb[1], nb[2], offset)
        })
    }
    /// Permutes axes (a view).
    pub fn permute<'a>(&'a self, a: Tensor<'a>, axes: [i32; 4]) -> Tensor<'a> {
        // SAFETY: ggml validates the permutation.
        Tensor::new(unsafe { ggml_permute(self.ctx.as_ptr(), a.raw(), axes[0], axes[1], axes[2], axes[3]) })
    }
    /// RoPE with optional per-pair frequency factors `ff` (ggml_rope_ext's `c`).
    pub fn rope<'a>(&'a self, a: Tensor<'a>, pos: Tensor<'a>, ff: Option<Tensor<'a>>, r: &RopeArgs) -> Tensor<'a> {
        let c = ff.map_or(std::ptr::null_mut(), |t| t.raw());
        // SAFETY: valid tensors; ggml checks shapes.
        Tensor::new(unsafe {
            ggml_rope_ext(
                self.ctx.as_ptr(), a.raw(), pos.raw(), c, r.n_dims, r.mode, r.n_ctx_orig, r.freq_base,
                r.freq_scale, r.ext_factor, r.attn_factor, r.beta_fast, r.beta_slow,
            )
        })
    }
    /// `softmax(a * scale + mask)` over rows.
    pub fn soft_max<'a>(&'a self, a: Tensor<'a>, mask: Option<Tensor<'a>>, scale: f32) -> Tensor<'a> {
        let m = mask.map_or(std::ptr::null_mut(), |t| t.raw());
        // SAFETY: valid tensors.
        Tensor::new(unsafe { ggml_soft_max_ext(self.ctx.as_ptr(), a.raw(), m, scale, 0.0) })
    }
    /// Fused attention, f32 accumulation. Result ne = [head_dim, n_head, n_tokens].
    pub fn flash_attn<'a>(&'a self, q: Tensor<'a>, k: Tensor<'a>, v: Tensor<'a>, mask: Tensor<'a>, scale: f32) -> Tensor<'a> {
        // SAFETY: valid tensors; ggml checks shapes.
        unsafe {
            let t = ggml_flash_attn_ext(self.ctx.as_ptr(), q.raw(), k.raw(), v.raw(), mask.raw(), scale, 0.0, 0.0);
            ggml_flash_attn_ext_set_prec(t, GGML_PREC_F32);
            Tensor::new(t)
        }
    }
    /// Requests f32 accumulation for a matrix product.
    pub fn set_f32_acc(&self, t: Tensor<'_>) {
        // SAFETY: valid tensor.
        unsafe { ggml_mul_mat_set_prec(t.raw(), GGML_PREC_F32) };
    }
}

/// Bytes of one row of `n` elements of type `ty`.
pub fn row_size(ty: u32, n: i64) -> usize {
    assert!(super::type_info(ty).is_some());
    // SAFETY: valid type.
    unsafe { ggml_row_size(ty, n) }
}
