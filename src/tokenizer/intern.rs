//! Byte strings → dense ids, and the hashes the tokenizer uses.

/// Byte strings → dense ids: an open-addressing hash table over one arena. A slot
/// holds `hash >> 32` (to skip most mismatches without touching the arena) and `id + 1`.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    arena: Vec<u8>,
    ends: Vec<u32>,
    table: Vec<u64>,
}

/// MurmurHash3's 64-bit finalizer: every input bit reaches every output bit.
pub(crate) fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A 64-bit hash of a byte string.
pub(crate) fn hash(s: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = s.len() as u64;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().unwrap()))
            .wrapping_mul(K)
            .rotate_left(29);
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    fmix64(h ^ u64::from_le_bytes(last))
}

impl Interner {
    pub(crate) fn with_capacity(n: usize, bytes: usize) -> Self {
        let mut s = Self {
            arena: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(n),
            table: Vec::new(),
        };
        s.table = vec![0; (n * 2).next_power_of_two().max(16)];
        s
    }

    pub(crate) fn text(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.arena[start..self.ends[i] as usize]
    }

    /// The table slot holding `s` (whose hash is `h`), or the empty slot where it would go.
    fn slot(&self, s: &[u8], h: u64) -> usize {
        let mask = self.table.len() - 1;
        let fp = h >> 32;
        let mut i = h as usize & mask;
        loop {
            let e = self.table[i];
            if e == 0 || (e >> 32 == fp && self.text((e as u32) - 1) == s) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub(crate) fn get(&self, s: &[u8]) -> Option<u32> {
        self.get_hashed(s, hash(s))
    }

    /// [`Self::get`] with `h = hash(s)` already known.
    pub(crate) fn get_hashed(&self, s: &[u8], h: u64) -> Option<u32> {
        let e = self.table[self.slot(s, h)];
        (e != 0).then(|| e as u32 - 1)
    }

    /// The id of `s`, added if new.
    pub(crate) fn insert(&mut self, s: &[u8]) -> u32 {
        let h = hash(s);
        let slot = self.slot(s, h);
        if self.table[slot] != 0 {
            return self.table[slot] as u32 - 1;
        }
        self.arena.extend_from_slice(s);
        self.ends.push(self.arena.len() as u32);
        let id = self.ends.len() as u32 - 1;
        self.table[slot] = (h >> 32) << 32 | (id as u64 + 1);
        if self.ends.len() * 2 > self.table.len() {
            let size = self.table.len() * 2;
            let old = std::mem::replace(&mut self.table, vec![0; size]);
            let mask = self.table.len() - 1;
            for e in old.into_iter().filter(|&e| e != 0) {
                let h = hash(self.text(e as u32 - 1));
                let mut i = h as usize & mask;
                while self.table[i] != 0 {
                    i = (i + 1) & mask;
                }
                self.table[i] = e;
            }
        }
        id
    }
}
