//! A minimal reader of SentencePiece's `tokenizer.model` protobuf: `ModelProto.pieces
//! {piece, score, type}`, the `trainer_spec` special ids and
//! `normalizer_spec.add_dummy_prefix` — what a GGUF vocabulary needs, with no C++ dependency.

use super::vocab::{tok_err, token_type::NORMAL};
use crate::Result;

/// One `ModelProto.SentencePiece`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpPiece {
    pub piece: String,
    pub score: f32,
    /// NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6.
    pub kind: i32,
}

/// The parts of a SentencePiece `ModelProto` a converter needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpModel {
    pub pieces: Vec<SpPiece>,
    /// `trainer_spec.model_type`: UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4.
    pub model_type: i32,
    pub byte_fallback: bool,
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    /// `normalizer_spec.add_dummy_prefix`.
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces`.
    pub remove_extra_whitespaces: bool,
}

/// A protobuf wire-format reader.
struct Pb<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Pb<'a> {
    fn new(b: &'a [u8]) -> Self {
        Pb { b, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or_else(|| tok_err("tokenizer.model: truncated varint"))?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(tok_err("tokenizer.model: varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() - self.pos {
            return Err(tok_err(format!("tokenizer.model: field of {n} bytes runs past the end")));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next (field number, value), or None at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (num, wt) = (key >> 3, key & 7);
        let f = match wt {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint()?;
                Field::Bytes(self.take(usize::try_from(n).map_err(|_| tok_err("tokenizer.model: huge field"))?)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            w => {
                return Err(tok_err(format!(
                    "tokenizer.model: unsupported wire type {w} (field {num}); not a SentencePiece model?"
                )))
            }
        };
        Ok(Some((num, f)))
    }
}

impl SpModel {
    /// Parses a serialized `ModelProto`.
    pub fn parse(bytes: &[u8]) -> Result<SpModel> {
        let mut m = SpModel {
            pieces: Vec::new(),
            model_type: 1,
            byte_fallback: false,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
        };
        let mut pb = Pb::new(bytes);
        while let Some((num, f)) = pb.next()? {
            match (num, f) {
                (1, Field::Bytes(b)) => m.pieces.push(parse_piece(b, m.pieces.len())?),
                (2, Field::Bytes(b)) => {
                    let mut t = Pb::new(b);
                    while let Some((n, f)) = t.next()? {
                        let Field::Varint(v) = f else { continue };
                        match n {
                            3 => m.model_type = v as i32,
                            35 => m.byte_fallback = v != 0,
                            40 => m.unk_id = v as i32,
                            41 => m.bos_id = v as i32,
                            42 => m.eos_id = v as i32,
                            43 => m.pad_id = v as i32,
                            _ => {}
                        }
                    }
                }
                (3, Field::Bytes(b)) => {
                    let mut t = Pb::new(b);
                    while let Some((n, f)) = t.next()? {
                        match (n, f) {
                            (3, Field::Varint(v)) => m.add_dummy_prefix = v != 0,
                            (4, Field::Varint(v)) => m.remove_extra_whitespaces = v != 0,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.pieces.is_empty() {
            return Err(tok_err("tokenizer.model has no pieces; not a SentencePiece model?"));
        }
        Ok(m)
    }
}

fn parse_piece(b: &[u8], index: usize) -> Result<SpPiece> {
    let mut p = SpPiece { piece: String::new(), score: 0.0, kind: NORMAL };
    let mut pb = Pb::new(b);
    while let Some((n, f)) = pb.next()? {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                p.piece = String::from_utf8(s.to_vec())
                    .map_err(|_| tok_err(format!("tokenizer.model: piece #{index} is not valid UTF-8")))?
            }
            (2, Field::Fixed32(x)) => p.score = f32::from_bits(x),
            (3, Field::Varint(v)) => p.kind = v as i32,
            _ => {}
        }
    }
    if !(1..=6).contains(&p.kind) {
        return Err(tok_err(format!("tokenizer.model: piece #{index} ({:?}) has unknown type {}", p.piece, p.kind)));
    }
    Ok(p)
}
