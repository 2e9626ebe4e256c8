//! Embeds every `<schema>/<version>_<name>.up.sql` (and its `.down.sql`) into the binary.
#![allow(clippy::disallowed_methods)] // build scripts read cargo's environment

use std::{env, fmt::Write as _, fs, path::Path};

fn main() {
    // Read at run time: a build script compiled for one checkout can be reused by cargo
    // for a clone elsewhere sharing the target directory (CI does exactly that).
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);
    let mut out = String::from(
        "/// Every migration, ordered by schema then version.\npub static MIGRATIONS: &[Migration] = &[\n",
    );
    let mut schemas: Vec<_> = fs::read_dir(root)
        .expect("read migrations dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.path().is_dir() && !matches!(e.file_name().to_str(), Some("src" | "tests" | "target"))
        })
        .map(|e| e.path())
        .collect();
    schemas.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for dir in schemas {
        println!("cargo:rerun-if-changed={}", dir.display());
        let schema = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let mut ups: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".up.sql")))
            .collect();
        ups.sort();
        for up in ups {
            println!("cargo:rerun-if-changed={}", up.display());
            let file = up.file_name().unwrap().to_str().unwrap();
            let stem = file.trim_end_matches(".up.sql");
            let (version, name) = stem
                .split_once('_')
                .expect("migration file is <version>_<name>.up.sql");
            let version: i64 = version.parse().expect("migration version is a number");
            let down = up.with_file_name(format!("{stem}.down.sql"));
            assert!(down.exists(), "{} has no .down.sql", up.display());
            println!("cargo:rerun-if-changed={}", down.display());
            writeln!(
                out,
                "    Migration {{ schema: {schema:?}, version: {version}, name: {name:?}, up: include_str!({:?}), down: include_str!({:?}) }},",
                up.display().to_string(),
                down.display().to_string()
            )
            .unwrap();
        }
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("migrations.rs"),
        out,
    )
    .unwrap();
}
