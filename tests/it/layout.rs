//! The architecture's invariants that a compiler cannot hold, checked over the source tree and
//! the lock file (ARCHITECTURE.md, "Invariants", says which line each test holds).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, with its path relative to the repository.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p: PathBuf = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root()).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Files (outside `allowed` prefixes) whose code, comments aside, has `needle` as a word
/// (`Status` is not in `ServingStatus`; `tonic` is in `tonic::Request`).
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    for dir in ["src", "crates"] {
        for (path, text) in sources(&root().join(dir)) {
            if allowed.iter().any(|a| path.starts_with(a)) {
                continue;
            }
            let code = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| {
                    l.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .any(|w| w == needle)
                });
            if code {
                bad.push(path);
            }
        }
    }
    bad
}

#[test]
fn sql_lives_in_store_only() {
    assert_eq!(offenders("rusqlite", &["src/store/"]), Vec::<String>::new());
    assert_eq!(offenders("PRAGMA", &["src/store/"]), Vec::<String>::new());
}

#[test]
fn only_rpc_knows_grpc_status_on_the_server_side() {
    // Client-side code (the client module, the command line, the uploader) reads statuses.
    let client_side = ["src/rpc/", "src/client/", "src/cli/", "src/upload/"];
    assert_eq!(offenders("Status", &client_side), Vec::<String>::new());
    assert_eq!(
        offenders(
            "tonic",
            &[
                "src/rpc/",
                "src/client/",
                "src/cli/",
                "src/upload/",
                "src/server.rs",
                "src/pb.rs",
                "src/wire.rs"
            ]
        ),
        Vec::<String>::new()
    );
}

#[test]
fn only_the_command_line_knows_clap() {
    assert_eq!(
        offenders("clap", &["src/cli/", "src/main.rs"]),
        Vec::<String>::new()
    );
}

/// The engine's whole dependency graph, from the lock file, has no async runtime, database,
/// gRPC, protobuf or argument parser in it.
#[test]
fn the_engine_depends_on_no_io_crate() {
    let lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.lock")).unwrap()).unwrap();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in lock["package"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_string();
        let list: Vec<String> = p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .map(|d| {
                d.iter()
                    .map(|x| x.as_str().unwrap().split(' ').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        deps.entry(name).or_default().extend(list);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec!["ampsim-engine".to_string()];
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone()) {
            todo.extend(deps.get(&n).cloned().unwrap_or_default());
        }
    }
    assert!(
        seen.len() > 10,
        "the walk found the engine's dependencies: {seen:?}"
    );
    for banned in [
        "tokio",
        "rusqlite",
        "libsqlite3-sys",
        "tonic",
        "prost",
        "clap",
        "hyper",
        "axum",
        "reqwest",
        "mio",
    ] {
        assert!(
            !seen.contains(banned),
            "the engine depends on {banned}: {seen:?}"
        );
    }
}
