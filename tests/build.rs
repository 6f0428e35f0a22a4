//! Builds the plugins workspace (`../plugins`) for wasm32-wasip2 and tells the tests where the
//! `.wasm` files are (`PLUGINS_DIR`), so a test can never run against a stale plugin.
//!
//! The nested cargo uses a target directory inside OUT_DIR: a different directory from the
//! outer build's, so the two never wait on each other's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tests/ has a parent").to_owned();
    let plugins = root.join("plugins");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out.join("plugins-target");

    // Rebuild when a plugin, the SDK or the contract changes (not on plugins/target).
    for p in [
        plugins.join("Cargo.toml"),
        plugins.join("Cargo.lock"),
        plugins.join(".cargo"),
        root.join("guest-sdk/rust"),
        root.join("wit"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    for entry in std::fs::read_dir(&plugins).expect("read plugins/").flatten() {
        let path = entry.path();
        if path.join("Cargo.toml").exists() {
            println!("cargo:rerun-if-changed={}", path.join("Cargo.toml").display());
            println!("cargo:rerun-if-changed={}", path.join("src").display());
        }
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    // The outer build's settings are for the host, not for wasm: drop them.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTFLAGS")
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "__CARGO_FIX_PLZ"
        {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
    let status = cmd.status().expect("cannot run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins in {} failed (see above). If the target is missing: rustup target add wasm32-wasip2",
            plugins.display()
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    assert!(has_wasm(&wasm_dir), "no .wasm in {} after the build", wasm_dir.display());
    println!("cargo:rustc-env=PLUGINS_DIR={}", wasm_dir.display());
}

fn has_wasm(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "wasm")))
        .unwrap_or(false)
}
