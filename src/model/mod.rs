//! Model architectures: GGUF weights → a forward pass with a KV cache per sequence.
//! Input: an opened `Gguf` and a `Device`. Output: a `Box<dyn Model>` whose `forward` turns
//! token ids into logits. Weights are immutable and shared (`Model: Send + Sync`); each
//! sequence owns a `KvCache` that grows on demand. The architecture is picked from the
//! `ARCHITECTURES` table by `general.architecture`.
//! Must not depend on tokenizers, templates, the engine or the server.

mod block;
mod check;
mod cpu;
mod decoder;
mod ffn;
mod gemma3;
mod ggml_ops;
mod kv_cache;
mod layers;
mod llama;
mod moe;
mod norm;
mod qwen2;
mod qwen3;
mod qwen3moe;
mod requant;
mod rope_scaling;
mod starcoder2;
pub mod trace;

/// wick's CPU kernels as the Criterion benches in benches/ call them; not a stable API.
#[doc(hidden)]
pub mod kernels {
    pub use super::cpu::bench::*;
}

use crate::gguf::Gguf;
use candle_core::{Device, Tensor};
use thiserror::Error;

#[cfg(test)]
pub(crate) use kv_cache::test_cache;
pub use kv_cache::KvCache;
pub use layers::{GpuMatmul, LoadOptions};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("unsupported architecture '{found}' (supported: {supported})")]
    UnsupportedArchitecture { found: String, supported: String },
    /// A metadata key or tensor that changes the model's math and that wick does not
    /// implement: refused rather than computing a different model.
    #[error("{arch} model uses {name} ({what}), which wick does not implement; refusing to load it rather than compute a different model")]
    Unsupported {
        arch: String,
        name: String,
        what: String,
    },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("the sequence would exceed the KV cache ({needed} > {capacity} tokens)")]
    CacheFull { needed: usize, capacity: usize },
    #[error("a KV cache of {requested} tokens is larger than the model supports ({max})")]
    CacheTooLarge { requested: usize, max: usize },
    #[error("token id {id} is outside the vocabulary ({vocab_size} tokens)")]
    TokenOutOfRange { id: u32, vocab_size: usize },
    #[error("forward pass called with no tokens")]
    EmptyInput,
    #[error("{arch} model has unusable hyperparameters: {what}")]
    BadHyperparameters { arch: String, what: String },
    #[error("invalid device '{0}' (expected cpu, cuda, cuda:N or metal)")]
    InvalidDevice(String),
    #[error("device '{device}' needs wick built with `--features {feature}`")]
    DeviceNotCompiled {
        device: String,
        feature: &'static str,
    },
    #[error("device '{device}' is not available: {reason}")]
    DeviceUnavailable { device: String, reason: String },
    #[error("{0}")]
    Candle(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Candle(e.to_string())
    }
}

/// What the rest of wick needs to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    /// The context length the model was trained for (from GGUF metadata).
    pub train_ctx: usize,
    pub vocab_size: usize,
}

/// A loaded model. Weights are shared read-only between threads; all per-sequence state
/// lives in the `KvCache` the caller passes in.
pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;

    /// A cache for one sequence of at most `capacity` tokens. Memory is allocated as the
    /// sequence grows (see `KvCache::reserve`), so an unused cache costs nothing.
    fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError>;

    /// Runs `tokens` at positions `cache.len()..`, appends their K/V to `cache`, and returns
    /// the logits of the last token as an f32 tensor of shape `[vocab]`.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError>;

    /// Like `forward` but returns the logits of every token: `[tokens.len(), vocab]`.
    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError>;

    /// Like `forward_all`, but row `i`'s logits equal, bit for bit, what a one-token
    /// `forward` at that position gives: speculative verification must reproduce plain
    /// decoding. The default runs the tokens one at a time.
    fn forward_verify(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let rows = tokens
            .iter()
            .map(|t| self.forward(std::slice::from_ref(t), cache))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// One decode step for several sequences: `tokens[i]` goes to `caches[i]`. Returns
    /// `[n, vocab]`. The default runs the sequences one after another.
    fn forward_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor, ModelError> {
        if tokens.len() != caches.len() || tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let rows = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, c)| self.forward(std::slice::from_ref(t), c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    /// One step for several sequences, each with one or more new tokens: `tokens[i]` runs
    /// at positions `caches[i].len()..` of `caches[i]` (a decode step is one token, a
    /// prefill chunk several). Returns `[n, vocab]`: the logits of each sequence's last
    /// token. The default runs the sequences one after another.
    fn forward_seqs(
        &self,
        tokens: &[&[u32]],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor, ModelError> {
        if tokens.len() != caches.len() || tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        let rows = tokens
            .iter()
            .zip(caches.iter_mut())
            .map(|(t, c)| self.forward(t, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// How an architecture file builds its model from an opened GGUF.
pub type LoadFn = fn(&mut Gguf, &Device, &LoadOptions) -> Result<Box<dyn Model>, ModelError>;

/// One supported `general.architecture`.
pub struct Arch {
    pub name: &'static str,
    pub load: LoadFn,
}

/// Every architecture wick can run. Adding one is a new file and a line here.
pub static ARCHITECTURES: &[Arch] = &[
    qwen2::ARCH,
    llama::ARCH,
    qwen3::ARCH,
    qwen3moe::ARCH,
    gemma3::ARCH,
    starcoder2::ARCH,
];

/// Loads the architecture named by `general.architecture`, with the default load options.
pub fn load(gguf: &mut Gguf, device: &Device) -> Result<Box<dyn Model>, ModelError> {
    load_with(gguf, device, &LoadOptions::default())
}

pub fn load_with(
    gguf: &mut Gguf,
    device: &Device,
    options: &LoadOptions,
) -> Result<Box<dyn Model>, ModelError> {
    let found = gguf.architecture()?.to_owned();
    match ARCHITECTURES.iter().find(|a| a.name == found) {
        Some(arch) => (arch.load)(gguf, device, options),
        None => Err(ModelError::UnsupportedArchitecture {
            found,
            supported: ARCHITECTURES
                .iter()
                .map(|a| a.name)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Maps `--device cpu|cuda[:N]|metal` to a candle device. A backend that this binary was
/// built without is a clear error naming the cargo feature, not a candle message.
pub fn device_from_str(s: &str) -> Result<Device, ModelError> {
    let not_compiled = |feature| ModelError::DeviceNotCompiled {
        device: s.to_owned(),
        feature,
    };
    let unavailable = |e: candle_core::Error| ModelError::DeviceUnavailable {
        device: s.to_owned(),
        reason: e.to_string(),
    };
    let cuda_ordinal = match s {
        "cpu" => return Ok(Device::Cpu),
        "metal" if cfg!(feature = "metal") => return Device::new_metal(0).map_err(unavailable),
        "metal" => return Err(not_compiled("metal")),
        "cuda" => 0,
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(ModelError::InvalidDevice(s.to_owned())),
        },
    };
    if cfg!(feature = "cuda") {
        open_cuda(s, cuda_ordinal)
    } else {
        Err(not_compiled("cuda"))
    }
}

/// Opens a CUDA device. A CUDA build loads libcuda and the CUDA libraries when the device
/// is opened (scripts/build-cuda), and cudarc panics when one cannot be loaded; here that
/// becomes an error naming the library and the fix, with no panic message on stderr.
fn open_cuda(name: &str, ordinal: usize) -> Result<Device, ModelError> {
    let unavailable = |reason: String| ModelError::DeviceUnavailable {
        device: name.to_owned(),
        reason,
    };
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(ordinal));
    std::panic::set_hook(quiet);
    match opened {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the CUDA libraries could not be loaded");
            Err(unavailable(cuda_load_failure(msg)))
        }
    }
}

/// cudarc's "Unable to dynamically load the \"cublas\" shared library - searched for ..."
/// as a one-line reason that says what to install or where to point LD_LIBRARY_PATH.
fn cuda_load_failure(msg: &str) -> String {
    let lib = msg
        .split("load the \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next());
    match lib {
        Some("cuda") => "cannot load the NVIDIA driver library (libcuda.so.1): is the NVIDIA \
                         driver installed?"
            .to_owned(),
        Some(lib) => format!(
            "cannot load lib{lib}.so from the CUDA toolkit: put its lib64 directory on \
             LD_LIBRARY_PATH (e.g. /usr/local/cuda/lib64)"
        ),
        None => msg.lines().next().unwrap_or(msg).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_device_names() {
        assert!(matches!(device_from_str("cpu"), Ok(Device::Cpu)));
        for bad in ["gpu", "cuda:x", "cuda:", "CPU", ""] {
            assert!(
                matches!(device_from_str(bad), Err(ModelError::InvalidDevice(_))),
                "{bad}"
            );
        }
        if !cfg!(feature = "cuda") {
            let e = device_from_str("cuda:1").unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
        if !cfg!(feature = "metal") {
            let e = device_from_str("metal").unwrap_err().to_string();
            assert!(e.contains("--features metal"), "{e}");
        }
    }

    #[test]
    fn names_the_cuda_library_that_failed_to_load() {
        let driver = cuda_load_failure(
            "Unable to dynamically load the \"cuda\" shared library - searched for library \
             names: [\"libcuda.so\"]. Ensure that `LD_LIBRARY_PATH` has the correct path",
        );
        assert!(
            driver.contains("libcuda.so.1") && driver.contains("driver"),
            "{driver}"
        );
        let blas = cuda_load_failure("Unable to dynamically load the \"cublasLt\" shared library");
        assert!(
            blas.contains("libcublasLt.so") && blas.contains("LD_LIBRARY_PATH"),
            "{blas}"
        );
        assert_eq!(cuda_load_failure("other\nlines"), "other");
    }

    #[test]
    fn architecture_table_names_are_unique() {
        let mut names: Vec<_> = ARCHITECTURES.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ARCHITECTURES.len());
    }
}
