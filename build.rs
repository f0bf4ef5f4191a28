//! Compiles each `bpf/*.bpf.c` into a libbpf-rs skeleton in `OUT_DIR`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let bpf_dir = manifest.join("bpf");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");

    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    let mut sources = Vec::new();
    for entry in fs::read_dir(&bpf_dir).expect("read bpf/") {
        let path = entry.expect("bpf/ entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".bpf.c") {
            sources.push((stem.to_owned(), path.clone()));
        }
    }
    sources.sort();

    for (stem, source) in sources {
        let skel = out_dir.join(format!("{stem}.skel.rs"));
        SkeletonBuilder::new()
            .source(&source)
            .clang_args(clang_args(&bpf_dir, &arch))
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("building BPF skeleton for {}: {e:#}", source.display()));
    }
}

/// The UAPI headers (`linux/bpf.h`) come from the system; `asm/types.h` lives in the
/// multiarch directory, which clang does not search when targeting BPF.
fn clang_args(bpf_dir: &Path, arch: &str) -> Vec<OsString> {
    let multiarch = match arch {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    vec![
        OsString::from("-I"),
        bpf_dir.as_os_str().to_owned(),
        OsString::from(format!("-I/usr/include/{multiarch}")),
        OsString::from("-Wall"),
    ]
}
