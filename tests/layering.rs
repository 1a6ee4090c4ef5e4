//! The layering of `src/` (see src/lib.rs), checked on the source text: `proto` imports from
//! neither `sys` nor `daemon`, `sys` not from `daemon`, and the modules (`proto::wire`,
//! `sys::socket`, `daemon::config`, ...) depend on each other without a cycle. Every
//! `crate::LAYER::MODULE` path counts, in `use` lines and in code alike.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 3] = ["proto", "sys", "daemon"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: `proto::wire` for src/proto/wire/ntp.rs, `sys::pipeline` for
/// src/sys/pipeline.rs; `None` for the layer roots (src/proto/mod.rs) and src/lib.rs, main.rs.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel: Vec<String> = file
        .strip_prefix(src)
        .unwrap()
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match rel.as_slice() {
        [layer, module, ..] if LAYERS.contains(&layer.as_str()) && module != "mod" => {
            Some(format!("{layer}::{module}"))
        }
        _ => None,
    }
}

/// Every `crate::LAYER::MODULE` the code names (comment lines are prose, not imports).
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let mut parts = rest.split("::");
        let layer = parts.next().unwrap_or("");
        let module: String = parts
            .next()
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if LAYERS.contains(&layer) && !module.is_empty() {
            found.insert(format!("{layer}::{module}"));
        }
    }
    found
}

fn layer_rank(module: &str) -> usize {
    let layer = module.split("::").next().unwrap();
    LAYERS.iter().position(|l| *l == layer).unwrap()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        let targets = edges.entry(from.clone()).or_default();
        for to in references(&text) {
            if to != from {
                targets.insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_layer_imports_from_a_layer_above_it() {
    let mut wrong = Vec::new();
    for (from, targets) in graph() {
        for to in targets {
            if layer_rank(&to) > layer_rank(&from) {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports: {wrong:#?}");
}

#[test]
fn modules_depend_on_each_other_without_a_cycle() {
    let edges = graph();
    // Kahn's algorithm: what cannot be ordered lies on a cycle.
    let mut indegree: BTreeMap<&String, usize> = edges.keys().map(|k| (k, 0)).collect();
    for targets in edges.values() {
        for t in targets {
            if let Some(d) = indegree.get_mut(t) {
                *d += 1;
            }
        }
    }
    let mut ready: Vec<&String> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut ordered = 0;
    while let Some(m) = ready.pop() {
        ordered += 1;
        for t in &edges[m] {
            if let Some(d) = indegree.get_mut(t) {
                *d -= 1;
                if *d == 0 {
                    ready.push(t);
                }
            }
        }
    }
    let cyclic: Vec<_> = indegree
        .iter()
        .filter(|(_, &d)| d > 0)
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(ordered, edges.len(), "modules on a cycle: {cyclic:?}");
    // The checker sees the layers at all.
    assert!(edges.contains_key("proto::wire") && edges.contains_key("daemon::config"));
}

#[test]
fn the_checker_finds_what_it_looks_for() {
    let text = "use crate::sys::socket::bind;\n/// [`crate::daemon::config`]\nlet x = crate::proto::wire::ntp::HEADER_LEN;\nfn f(_: crate::daemon::server::X) {}";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["daemon::server", "proto::wire", "sys::socket"]);
    let src = Path::new("/x/src");
    assert_eq!(
        module_of(src, Path::new("/x/src/proto/wire/ntp.rs")).as_deref(),
        Some("proto::wire")
    );
    assert_eq!(module_of(src, Path::new("/x/src/proto/mod.rs")), None);
    assert_eq!(module_of(src, Path::new("/x/src/lib.rs")), None);
}
