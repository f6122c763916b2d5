//! Compiles the C reference writer and reader (`reference/`) into OUT_DIR
//! with the compiler the `cc` crate finds, and tells the crate where they are
//! (`SHMCONF_C_REFERENCE_DIR`), so `--impl c-reference` needs no setup.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("c-reference");
    std::fs::create_dir_all(&out).unwrap();
    let compiler = cc::Build::new().opt_level(2).warnings(true).get_compiler();
    // A static Rust build (-C target-feature=+crt-static, as for the Docker
    // image FROM scratch) gets static C binaries too.
    let static_link = std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|x| x == "crt-static"));
    for role in ["writer", "reader"] {
        let src = format!("reference/{role}.c");
        println!("cargo:rerun-if-changed={src}");
        let status = compiler
            .to_command()
            .args(["-std=gnu11"])
            .args(static_link.then_some("-static"))
            .arg("-o")
            .arg(out.join(format!("c-{role}")))
            .arg(&src)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling {src} failed");
    }
    println!("cargo:rerun-if-changed=reference/common.h");
    println!("cargo:rustc-env=SHMCONF_C_REFERENCE_DIR={}", out.display());
}
