//! Compile a component once and keep the machine code on disk.
//!
//! Compiling a component with Cranelift takes tens to hundreds of milliseconds; loading the
//! precompiled artifact takes well under one. The cache key is the SHA-256 of the component's
//! bytes plus a hash of the engine's compatibility settings (wasmtime version, target,
//! tunables), so a changed plugin or a changed engine never loads a stale artifact.
//!
//! Trust: loading a precompiled artifact runs its machine code unchecked, so the cache
//! directory must be writable only by the user running the host (as `~/.cache` is).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// `$XDG_CACHE_HOME/baton/components`, else `$HOME/.cache/baton/components`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("baton").join("components"))
}

/// The cache file name for `bytes` compiled by `engine`.
fn key(engine: &Engine, bytes: &[u8]) -> String {
    let content = Sha256::digest(bytes);
    // DefaultHasher::new() has fixed keys: the same settings hash the same in every process.
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", h.finish())
}

/// The component for `bytes`: from the cache when it holds it, else compiled (and cached).
/// The flag says whether it came from the cache.
pub fn compile(engine: &Engine, bytes: &[u8], dir: Option<&Path>) -> anyhow::Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::from_binary(engine, bytes).map_err(anyhow::Error::from)?, false));
    };
    let path = dir.join(key(engine, bytes));
    if path.exists() {
        match load(engine, &path) {
            Ok(c) => return Ok((c, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring an unreadable cached component ({e:#}); recompiling")
            }
        }
    }
    let serialized = engine.precompile_component(bytes).map_err(anyhow::Error::from)?;
    if let Err(e) = store(dir, &path, &serialized) {
        // A read-only or full disk costs speed, not correctness.
        tracing::warn!(dir = %dir.display(), "cannot write the component cache: {e:#}");
    }
    #[allow(unsafe_code)]
    // SAFETY: `serialized` was produced just now by `precompile_component` on this same engine.
    let component = unsafe { Component::deserialize(engine, &serialized) }.map_err(anyhow::Error::from)?;
    Ok((component, false))
}

fn load(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    #[allow(unsafe_code)]
    // SAFETY: the file was written by `store` below from `precompile_component` output, under a
    // name that includes the engine's compatibility hash; wasmtime checks its header and
    // version and rejects a truncated or foreign file. The cache directory is the user's own.
    let c = unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)?;
    Ok(c)
}

/// Write atomically (temporary file, then rename) so a concurrent reader or a crash never
/// sees half a file.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}
