//! Read-only memory maps of model files.

use std::fs::File;
use std::io;
use std::path::Path;

/// A file mapped read-only into memory. The bytes stay valid for the life of the
/// value; the mapping is private, so later writes to the file by other processes
/// are the one hazard memory maps always carry (the same as llama.cpp's loader).
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `path` read-only. An empty file maps to an empty slice.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the map is read-only and private; we never hand out a mutable
        // view, and the `Mmap` keeps the mapping alive as long as `self`.
        let map = unsafe { memmap2::MmapOptions::new().map(&file)? };
        Ok(Self { map })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Address of the first byte (for zero-copy binding into ggml buffers).
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
