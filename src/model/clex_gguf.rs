//! Reading a model's CLEX settings and ODE weights from GGUF (see docs/gguf-clex.md).

use super::HParams;
use crate::clex::{ClexAct, ClexParams, ClexTable};
use crate::gguf::GgufFile;
use crate::{Error, Result};

fn f32_tensor(f: &GgufFile, name: &str, dims: &[u64]) -> Result<Vec<f32>> {
    let t = f.tensor(name).ok_or_else(|| Error::Clex(format!("missing tensor {name:?}")))?;
    if t.ty.name != "f32" {
        return Err(Error::Clex(format!("tensor {name:?} must be f32, found {}", t.ty.name)));
    }
    if t.dims != dims {
        return Err(Error::Clex(format!("tensor {name:?} has shape {:?}, expected {dims:?}", t.dims)));
    }
    Ok(f.tensor_data(t).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

/// The CLEX table of a model whose `{arch}.rope.scaling.type` is "clex", solved from the
/// ODE weights in the file; `None` for other models.
pub fn load_clex(f: &GgufFile, hp: &HParams) -> Result<Option<ClexTable>> {
    if hp.rope_scaling_type != "clex" {
        return Ok(None);
    }
    let a = hp.arch.name();
    let key = |s: &str| format!("{a}.rope.clex.{s}");
    let need_u32 = |k: &str| -> Result<u32> {
        f.get_u32(k)?.ok_or_else(|| Error::Clex(format!("missing metadata key {k:?}")))
    };
    let orig_ctx = need_u32(&format!("{a}.rope.scaling.original_context_length"))?;
    let act = match f.get_str(&key("act"))? {
        Some(s) => ClexAct::parse(s).map_err(Error::Clex)?,
        None => ClexAct::Silu,
    };
    let params = ClexParams {
        head_dim: hp.n_rot,
        max_factor: need_u32(&key("max_factor"))?,
        param_factor: need_u32(&key("param_factor"))?,
        act,
        time_dt: f.get_f32(&key("time_dt"))?.unwrap_or(0.01),
        ntk_base: f.get_f32(&key("ntk_base"))?.unwrap_or(10000.0),
        orig_ctx,
        log_scale: f.get_bool(&key("log_scale"))?.unwrap_or(false),
    };
    params.validate().map_err(Error::Clex)?;
    if params.max_factor > 4096 || params.param_factor > 64 {
        return Err(Error::Clex(format!(
            "implausible CLEX sizes: max_factor {} param_factor {}",
            params.max_factor, params.param_factor
        )));
    }
    let d2 = (hp.n_rot / 2) as u64;
    let m = params.param_factor as u64 * hp.n_rot as u64;
    let up = f32_tensor(f, "clex.ode_up_proj", &[m, d2])?;
    let down = f32_tensor(f, "clex.ode_down_proj", &[d2, m])?;
    let inv_freq = f32_tensor(f, "clex.inv_freq", &[d2])?;
    ClexTable::solve(&params, &inv_freq, &up, &down).map(Some).map_err(Error::Clex)
}
