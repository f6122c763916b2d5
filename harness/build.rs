//! Compiles the C reference writer and reader (`reference/`) and the PID
//! namespaces' init (`native/pid-init.c`) into OUT_DIR
//! with the compiler the `cc` crate finds, and tells the crate where they are
//! (`SHMCONF_C_REFERENCE_DIR`), so `--impl c-reference` needs no setup; the
//! crate carries their bytes (an installed shmconf has no OUT_DIR). And lists
//! the scenario catalogue (`../scenarios/**/*.toml`) for the crate to carry
//! (`catalogue.rs`), so `shmconf run` outside the repository runs it.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("c-reference");
    std::fs::create_dir_all(&out).unwrap();
    let compiler = cc::Build::new().opt_level(2).warnings(true).get_compiler();
    // A static Rust build (-C target-feature=+crt-static, as for the Docker
    // image FROM scratch) gets static C binaries too.
    let static_link = std::env::var("CARGO_CFG_TARGET_FEATURE").is_ok_and(|f| f.split(',').any(|x| x == "crt-static"));
    let compile = |src: &str, name: &str| {
        println!("cargo:rerun-if-changed={src}");
        let status = compiler
            .to_command()
            .args(["-std=gnu11"])
            .args(static_link.then_some("-static"))
            .arg("-o")
            .arg(out.join(name))
            .arg(src)
            .status()
            .expect("run the C compiler");
        assert!(status.success(), "compiling {src} failed");
    };
    for role in ["writer", "reader"] {
        compile(&format!("reference/{role}.c"), &format!("c-{role}"));
    }
    println!("cargo:rerun-if-changed=reference/common.h");
    // The init of each scenario's PID namespace.
    compile("native/pid-init.c", "pid-init");
    println!("cargo:rustc-env=SHMCONF_C_REFERENCE_DIR={}", out.display());
    write_catalogue();
}

/// `$OUT_DIR/catalogue.rs`: `CATALOGUE`, each scenario file's path under
/// the folder and its text (by `include_str!`, so the compiler reads them).
/// Written here rather than with a directory-embedding macro so that a file
/// added, removed or changed in the folder rebuilds the crate: the folder is
/// a `rerun-if-changed` path, which cargo scans whole.
fn write_catalogue() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("../scenarios");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_toml(&root, &root, &mut files);
    files.sort();
    let mut text = String::from(
        "/// The scenario catalogue: (path under `scenarios/`, text).\npub const CATALOGUE: &[(&str, &str)] = &[\n",
    );
    for rel in &files {
        let abs = std::fs::canonicalize(root.join(rel)).unwrap();
        text.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    text.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("catalogue.rs");
    std::fs::write(out, text).unwrap();
}

fn collect_toml(root: &std::path::Path, dir: &std::path::Path, files: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_toml(root, &path, files);
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}
