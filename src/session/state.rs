//! Saving a session to a file and restoring it: the tokens, the KV cache cells that hold
//! them and the CLEX bucket, so a conversation can go on later (in another process)
//! without evaluating it again.
//!
//! Format (little-endian), version 1:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `CLEXSESS` |
//! | 4 | format version |
//! | 32 | model identity ([`Model::identity`]) |
//! | 8, 4, 4, 1 | n_ctx, K cache type, V cache type, flash attention |
//! | 32 | SHA-256 of the RoPE settings (scaling, overrides, CLEX policy) |
//! | 4, 8, 8 | bucket, token count n, KV byte count |
//! | 4·n | tokens |
//! | … | per layer: K of cells 0..n, then V of cells 0..n (rows of a transposed V) |
//! | 32 | SHA-256 of everything before |
//!
//! A state restores only into a session of the same model with the same context size,
//! cache types, flash attention and RoPE settings; anything else is refused with an
//! [`Error::State`] that names the difference.

use super::Session;
use crate::kv::KvCache;
use crate::model::Model;
use crate::{Error, Result};
use ggml_sys::safe::Tensor;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CLEXSESS";
/// The version of the state format this build writes and reads.
pub const STATE_VERSION: u32 = 1;

impl Model {
    /// A SHA-256 that tells models apart: the GGUF header (metadata and tensor table),
    /// the file size and 64 samples of 4 KiB spread over the weights. Cheap (the weights
    /// are not read whole); used to refuse restoring a state saved with another model.
    pub fn identity(&self) -> [u8; 32] {
        const SAMPLES: usize = 64;
        const WINDOW: usize = 4096;
        let b = self.gguf.bytes();
        let head = usize::try_from(self.gguf.data_offset()).unwrap_or(b.len()).min(b.len());
        let mut h = Sha256::new();
        h.update(b"clex model identity 1");
        h.update((b.len() as u64).to_le_bytes());
        h.update(&b[..head]);
        let data = &b[head..];
        if data.len() <= SAMPLES * WINDOW {
            h.update(data);
        } else {
            for i in 0..SAMPLES {
                let start = (data.len() - WINDOW) / (SAMPLES - 1) * i;
                h.update(&data[start..start + WINDOW]);
            }
        }
        h.finalize().into()
    }
}

/// The fixed part of a state file, after the magic and version.
#[derive(Debug, PartialEq)]
struct Header {
    model: [u8; 32],
    n_ctx: u64,
    type_k: u32,
    type_v: u32,
    flash_attn: bool,
    rope: [u8; 32],
    bucket: u32,
    n_tokens: u64,
    kv_bytes: u64,
}

/// A writer or reader that hashes what goes through it.
struct Hashed<T> {
    inner: T,
    h: Sha256,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().take(6).map(|x| format!("{x:02x}")).collect()
}

/// The byte ranges of the cache that hold cells `0..n`: per layer, K then V.
fn segments(kv: &KvCache, n_layer: usize, n: usize) -> Vec<(Tensor<'_>, usize, usize)> {
    let mut out = Vec::new();
    for il in 0..n_layer {
        let k = kv.k(il);
        out.push((k, 0, k.nb()[1] * n));
        let v = kv.v(il);
        if kv.v_trans {
            // [n_ctx, n_embd_kv]: the first n elements of every row.
            for r in 0..v.ne()[1] as usize {
                out.push((v, r * v.nb()[1], v.nb()[0] * n));
            }
        } else {
            out.push((v, 0, v.nb()[1] * n));
        }
    }
    out
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::State(format!("{}: truncated", path.display())),
        _ => Error::Io { path: path.to_path_buf(), source: e },
    }
}

fn read_arr<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

impl Session {
    fn state_header(&self) -> Header {
        let rope = Sha256::digest(format!("{:?}", self.opts.rope).as_bytes()).into();
        let n = self.tokens.len();
        let kv_bytes = segments(&self.kv, self.model.hparams.n_layer, n).iter().map(|s| s.2 as u64).sum();
        Header {
            model: self.model.identity(),
            n_ctx: self.opts.n_ctx as u64,
            type_k: self.opts.type_k,
            type_v: self.opts.type_v,
            flash_attn: self.opts.flash_attn,
            rope,
            bucket: self.cur_bucket,
            n_tokens: n as u64,
            kv_bytes,
        }
    }

    /// Saves the session's state to `path` (written to a temporary file beside it, then
    /// renamed, so a failed save leaves an older file whole).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let r = self.write_state(std::io::BufWriter::new(f), &tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// [`Session::save`] to any writer.
    pub fn save_to(&self, w: impl Write) -> Result<()> {
        self.write_state(w, Path::new("(session state stream)"))
    }

    fn write_state(&self, w: impl Write, path: &Path) -> Result<()> {
        let e = io_err(path);
        let hd = self.state_header();
        let mut w = Hashed { inner: w, h: Sha256::new() };
        w.write_all(MAGIC).map_err(&e)?;
        let mut head = Vec::with_capacity(128);
        head.extend(STATE_VERSION.to_le_bytes());
        head.extend(hd.model);
        head.extend(hd.n_ctx.to_le_bytes());
        head.extend(hd.type_k.to_le_bytes());
        head.extend(hd.type_v.to_le_bytes());
        head.push(hd.flash_attn as u8);
        head.extend(hd.rope);
        head.extend(hd.bucket.to_le_bytes());
        head.extend(hd.n_tokens.to_le_bytes());
        head.extend(hd.kv_bytes.to_le_bytes());
        head.extend(self.tokens.iter().flat_map(|t| t.to_le_bytes()));
        w.write_all(&head).map_err(&e)?;
        let mut buf = Vec::new();
        for (t, off, len) in segments(&self.kv, self.model.hparams.n_layer, self.tokens.len()) {
            buf.resize(len, 0);
            t.get_bytes(off, &mut buf);
            w.write_all(&buf).map_err(&e)?;
        }
        let sum: [u8; 32] = w.h.finalize_reset().into();
        w.inner.write_all(&sum).map_err(&e)?;
        w.inner.flush().map_err(&e)
    }

    /// Restores a state saved by [`Session::save`] from a session of the same model and
    /// options. A file that does not match is refused before anything changes; one that
    /// turns out corrupt while it is read leaves the session empty.
    pub fn restore(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let f = std::fs::File::open(path).map_err(io_err(path))?;
        let len = f.metadata().map_err(io_err(path))?.len();
        self.read_state(std::io::BufReader::new(f), path, Some(len))
    }

    /// [`Session::restore`] from any reader.
    pub fn restore_from(&mut self, r: impl Read) -> Result<()> {
        self.read_state(r, Path::new("(session state stream)"), None)
    }

    /// Reads a state; `len`, when known, is the size of the whole file.
    fn read_state(&mut self, r: impl Read, path: &Path, len: Option<u64>) -> Result<()> {
        let e = io_err(path);
        let bad = |m: String| Error::State(format!("{}: {m}", path.display()));
        let mut r = Hashed { inner: r, h: Sha256::new() };
        let magic: [u8; 8] = read_arr(&mut r).map_err(|_| bad("not a clex session state (too short)".into()))?;
        if &magic != MAGIC {
            return Err(bad("not a clex session state (wrong magic)".into()));
        }
        let version = u32::from_le_bytes(read_arr(&mut r).map_err(&e)?);
        if version != STATE_VERSION {
            return Err(bad(format!("format version {version}; this build reads version {STATE_VERSION}")));
        }
        let hd = Header {
            model: read_arr(&mut r).map_err(&e)?,
            n_ctx: u64::from_le_bytes(read_arr(&mut r).map_err(&e)?),
            type_k: u32::from_le_bytes(read_arr(&mut r).map_err(&e)?),
            type_v: u32::from_le_bytes(read_arr(&mut r).map_err(&e)?),
            flash_attn: read_arr::<1>(&mut r).map_err(&e)?[0] != 0,
            rope: read_arr(&mut r).map_err(&e)?,
            bucket: u32::from_le_bytes(read_arr(&mut r).map_err(&e)?),
            n_tokens: u64::from_le_bytes(read_arr(&mut r).map_err(&e)?),
            kv_bytes: u64::from_le_bytes(read_arr(&mut r).map_err(&e)?),
        };
        self.check_header(&hd).map_err(bad)?;
        let n = hd.n_tokens as usize;
        // Magic and version, the header, tokens, KV, checksum.
        const HEADER: u64 = 32 + 8 + 4 + 4 + 1 + 32 + 4 + 8 + 8;
        let want = 12 + HEADER + 4 * hd.n_tokens + hd.kv_bytes + 32;
        match len {
            Some(l) if l < want => return Err(bad(format!("truncated ({l} bytes, {want} expected)"))),
            Some(l) if l > want => return Err(bad(format!("{l} bytes, {want} expected: not a whole state"))),
            _ => {}
        }
        let mut raw = vec![0u8; n * 4];
        r.read_exact(&mut raw).map_err(&e)?;
        let tokens: Vec<u32> = raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let n_vocab = self.model.hparams.n_vocab;
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(bad(format!("token {t} is outside the vocabulary ({n_vocab}); the file is corrupt")));
        }
        // From here on the cache is overwritten: the session is empty until it is whole.
        self.reset();
        let mut buf = Vec::new();
        for (t, off, len) in segments(&self.kv, self.model.hparams.n_layer, n) {
            buf.resize(len, 0);
            r.read_exact(&mut buf).map_err(&e)?;
            t.set_bytes(off, &buf);
        }
        let sum: [u8; 32] = r.h.finalize_reset().into();
        let stored: [u8; 32] = read_arr(&mut r.inner).map_err(&e)?;
        if sum != stored {
            self.kv.clear();
            return Err(bad("checksum mismatch: the file is corrupt (the session was cleared)".into()));
        }
        self.tokens = tokens;
        self.cur_bucket = hd.bucket;
        Ok(())
    }

    /// Whether a state with this header fits this session; the difference if not.
    fn check_header(&self, hd: &Header) -> Result<(), String> {
        let me = self.state_header();
        let name = |t: u32| ggml_sys::safe::type_info(t).map_or_else(|| format!("type {t}"), |i| i.name.to_string());
        if hd.model != me.model {
            return Err(format!(
                "saved with another model (identity {}…, this session's model {}…)",
                hex(&hd.model),
                hex(&me.model)
            ));
        }
        if hd.n_ctx != me.n_ctx {
            return Err(format!("saved with a context of {} tokens, this session has {}", hd.n_ctx, me.n_ctx));
        }
        if (hd.type_k, hd.type_v) != (me.type_k, me.type_v) {
            return Err(format!(
                "saved with a {}/{} KV cache, this session has {}/{}",
                name(hd.type_k),
                name(hd.type_v),
                name(me.type_k),
                name(me.type_v)
            ));
        }
        if hd.flash_attn != me.flash_attn {
            return Err(format!("saved with flash attention {}, this session has it {}", onoff(hd.flash_attn), onoff(me.flash_attn)));
        }
        if hd.rope != me.rope {
            return Err("saved with other RoPE scaling / CLEX settings than this session's".into());
        }
        if hd.n_tokens > hd.n_ctx {
            return Err(format!("{} tokens do not fit in its own context of {}; the file is corrupt", hd.n_tokens, hd.n_ctx));
        }
        let want: u64 = segments(&self.kv, self.model.hparams.n_layer, hd.n_tokens as usize).iter().map(|s| s.2 as u64).sum();
        if hd.kv_bytes != want {
            return Err(format!("{} bytes of KV cache for {} tokens, expected {want}; the file is corrupt", hd.kv_bytes, hd.n_tokens));
        }
        let max_bucket = self.rope.bucket(self.opts.n_ctx).unwrap_or(1).max(1);
        let bucket_ok = if hd.n_tokens == 0 { hd.bucket == 0 } else { (1..=max_bucket).contains(&hd.bucket) };
        if !bucket_ok {
            return Err(format!("bucket {} is impossible for {} tokens; the file is corrupt", hd.bucket, hd.n_tokens));
        }
        Ok(())
    }
}

fn onoff(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
