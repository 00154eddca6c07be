//! GPU offload: which device, which layers. Like llama.cpp's `-ngl N`, the last `N`
//! repeating layers go to the device (their weights uploaded once, their KV cache
//! allocated there); `N` greater than the layer count also moves the output layer
//! (final norm and projection). The token embedding always stays on the CPU, mapped.
//! ggml's scheduler runs each operation where its weights live and copies
//! activations between devices.

use crate::{Error, Result};
use ggml_sys::safe::{devices, Backend, DeviceInfo, DeviceKind};

/// Where a model's layers run, resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offload {
    /// Index of the device in ggml's registry ([`list_devices`]).
    pub device: usize,
    /// Its name ("Vulkan0", "CUDA0", …).
    pub device_name: String,
    /// Repeating layers on the device: the last `n_layers` ones.
    pub n_layers: usize,
    /// Whether the output layer is on the device too.
    pub output: bool,
}

impl Offload {
    /// Whether layer `il` of `n_layer` runs on the device.
    pub fn has_layer(&self, il: usize, n_layer: usize) -> bool {
        il + self.n_layers >= n_layer
    }

    /// A backend for the device.
    pub fn backend(&self) -> Result<Backend> {
        Backend::device(self.device).map_err(|e| Error::Ggml(format!("device {}: {e}", self.device_name)))
    }
}

/// Every device ggml sees in this build (the CPU included).
pub fn list_devices() -> Vec<DeviceInfo> {
    devices()
}

/// The GPU backends compiled into this build.
pub fn gpu_features() -> &'static [&'static str] {
    &[
        #[cfg(feature = "vulkan")]
        "vulkan",
        #[cfg(feature = "cuda")]
        "cuda",
    ]
}

/// Resolves `-ngl` and `--device` against the devices present.
pub fn resolve(n_gpu_layers: usize, device: Option<&str>, n_layer: usize) -> Result<Option<Offload>> {
    let devs = list_devices();
    let gpus: Vec<&DeviceInfo> = devs.iter().filter(|d| d.kind != DeviceKind::Cpu).collect();
    if n_gpu_layers == 0 {
        if let Some(name) = device {
            // A device asked for with nothing to put on it: still check the name.
            find(&gpus, name)?;
        }
        return Ok(None);
    }
    if gpus.is_empty() {
        return Err(Error::Device(if gpu_features().is_empty() {
            "-ngl needs a GPU backend, and this build has none: rebuild with `--features vulkan` or `--features cuda`".into()
        } else {
            format!(
                "-ngl: no GPU device found (this build has {}; `clex-run devices` lists what ggml sees; a CPU Vulkan driver such as lavapipe is used only when GGML_VK_VISIBLE_DEVICES names it)",
                gpu_features().join(", ")
            )
        }));
    }
    let dev = match device {
        Some(name) => find(&gpus, name)?,
        None => gpus[0],
    };
    Ok(Some(Offload {
        device: dev.index,
        device_name: dev.name.clone(),
        n_layers: n_gpu_layers.min(n_layer),
        output: n_gpu_layers > n_layer,
    }))
}

fn find<'a>(gpus: &[&'a DeviceInfo], name: &str) -> Result<&'a DeviceInfo> {
    gpus.iter().copied().find(|d| d.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
        let have: Vec<&str> = gpus.iter().map(|d| d.name.as_str()).collect();
        Error::Device(if have.is_empty() {
            format!("--device {name:?}: this build sees no GPU device")
        } else {
            format!("--device {name:?}: no such device (have: {})", have.join(", "))
        })
    })
}
