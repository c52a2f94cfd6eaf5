//! Repository checks over the source: no crate has modules, or top-level modules, that
//! import each other in a circle (inline paths included), and `avsoak`'s top-level
//! modules import only those before them in [`AVSOAK_ORDER`], so data flows one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The order of `avsoak`'s top-level modules: each imports only modules before it. The
/// one statement of the order (ARCHITECTURE.md's codemap follows it); a new module
/// takes its place here.
const AVSOAK_ORDER: &[&str] = &[
    "fmt",
    "scenario",
    "stats",
    "modules",
    "resources",
    "heap",
    "profile",
    "protocol",
    "probe",
    "series",
    "speed",
    "report",
    "flame",
    "html",
    "junit",
    "markdown",
    "render",
    "gate",
    "journal",
    "soak",
    "testing",
    "runner",
];

/// Every crate's `src/` folder, from the workspace root.
const CRATES: &[&str] = &[
    "hooks/src",
    "avsoak/src",
    "fixtures/src",
    "scenarios/src",
    "xtask/src",
    "examples/own-pipeline/src",
];

/// Module path (`soak::child`) of a file under `src`; `None` for crate roots and binaries.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    } else if parts.is_empty() {
        return None;
    }
    Some(parts)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of `text` without comments (line comments and doc comments; the crates use
/// no block comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths a module's code names: `crate::a::b`, `super::c`, and each item of
/// `crate::{a, b::c}`, as segment lists from the crate root.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let heads: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect()
            } else {
                vec![rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect()]
            };
            for head in heads {
                let mut path = base.clone();
                path.extend(
                    head.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                found.push(path);
            }
        }
    }
    found
}

/// Every inline path through `name` in `code` (`name::a::b` not behind another path
/// segment), as the segments after `name`.
fn inline_paths(code: &str, name: &str) -> Vec<Vec<String>> {
    let prefix = format!("{name}::");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        found.push(
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        );
    }
    found
}

/// The module a path lands in: its longest prefix that is a module.
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A module's imports of other modules, leaving out its ancestors and descendants (a
/// parent declares and re-exports its children; a child names its parent's items).
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut sources = BTreeMap::new();
    for file in &files {
        if let Some(module) = module_of(src, file) {
            sources.insert(module, code(&std::fs::read_to_string(file).unwrap()));
        }
    }
    let modules: BTreeSet<Vec<String>> = sources.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, code) in &sources {
        let edges = graph.entry(module.join("::")).or_default();
        let mut paths = references(module, code);
        // A module imported by name (`use crate::ffi;`) is named again inline
        // (`ffi::encode::config()`): those paths land in its submodules.
        let aliases: Vec<Vec<String>> = paths
            .iter()
            .filter(|p| modules.contains(*p))
            .cloned()
            .collect();
        for alias in aliases {
            let name = alias.last().expect("a module path has a name");
            paths.extend(inline_paths(code, name).into_iter().map(|rest| {
                let mut path = alias.clone();
                path.extend(rest);
                path
            }));
        }
        for path in paths {
            let Some(target) = resolve(&modules, &path) else {
                continue;
            };
            let related = target.starts_with(module) || module.starts_with(&target);
            if !related {
                edges.insert(target.join("::"));
            }
        }
    }
    graph
}

/// `graph` with every module folded into its top-level module (`soak::child` into
/// `soak`), each one's edges to itself left out: the layers a crate's modules form.
fn layers(graph: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut folded = Graph::new();
    for (module, edges) in graph {
        let from = top(module);
        let entry = folded.entry(from.clone()).or_default();
        entry.extend(edges.iter().map(|e| top(e)).filter(|e| *e != from));
    }
    folded
}

/// One cycle of `graph`, as the modules around it, if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), false);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(true) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn no_crate_has_a_module_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in CRATES {
        let graph = graph(&root.join(src));
        assert!(
            graph.len() > 1 || *src != "avsoak/src",
            "{src}: no modules found"
        );
        if let Some(found) = cycle(&graph) {
            panic!("{src}: modules import each other: {}", found.join(" -> "));
        }
        if let Some(found) = cycle(&layers(&graph)) {
            panic!(
                "{src}: top-level modules import each other: {}",
                found.join(" -> ")
            );
        }
    }
}

/// The checker's positive control: a planted cycle through `super::` and a grouped
/// `crate::{…}` import is found; the same modules without it are not.
#[test]
fn a_planted_module_cycle_is_found() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tidy-planted");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod fmt;\npub mod run;\npub mod report;\n");
    write(
        "fmt.rs",
        "// crate::report would be a cycle, but this is a comment\n",
    );
    write("run/mod.rs", "pub mod child;\npub use child::go;\n");
    write(
        "run/child.rs",
        "use super::super::fmt;\nuse crate::{fmt, report::Table};\n",
    );
    write("report.rs", "use crate::fmt::human;\n");
    let clean = graph(&dir);
    assert_eq!(cycle(&clean), None, "{clean:?}");
    assert!(clean["run::child"].contains("report"), "{clean:?}");

    write(
        "report.rs",
        "use crate::fmt::human;\nuse crate::run::child::go;\n",
    );
    write("fmt.rs", "pub fn f() { super::report::x() }\n");
    let planted = graph(&dir);
    let found = cycle(&planted).expect("the planted cycle");
    assert!(found.contains(&"report".to_owned()), "{found:?}");
}

/// The control for inline paths: a module imported by name and named again inline
/// (`use crate::ffi;` then `ffi::encode::config()`) reaches the submodule, so a
/// submodule that calls back up (`crate::media::init()`) closes a cycle.
#[test]
fn a_planted_cycle_through_an_inline_path_is_found() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tidy-inline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("ffi")).unwrap();
    let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
    write("lib.rs", "pub mod ffi;\npub mod media;\n");
    write("ffi/mod.rs", "pub mod encode;\npub fn init() {}\n");
    write("ffi/encode.rs", "pub fn config() { super::init() }\n");
    write(
        "media.rs",
        "use crate::ffi;\npub fn init() {}\npub fn open() { ffi::encode::config() }\n",
    );
    let clean = graph(&dir);
    assert_eq!(cycle(&clean), None, "{clean:?}");
    assert!(clean["media"].contains("ffi::encode"), "{clean:?}");

    write(
        "ffi/encode.rs",
        "pub fn config() { crate::media::init() }\n",
    );
    let planted = graph(&dir);
    let found = cycle(&planted).expect("the planted cycle");
    assert!(found.contains(&"ffi::encode".to_owned()), "{found:?}");

    // The same submodule calling back up to a module that only reaches a sibling
    // (`ffi::x264`) is no cycle between modules, but the layers `ffi` and `media`
    // still import each other.
    write(
        "media.rs",
        "use crate::ffi;\npub fn init() {}\npub fn open() { ffi::init() }\n",
    );
    let layered = graph(&dir);
    assert_eq!(cycle(&layered), None, "{layered:?}");
    let found = cycle(&layers(&layered)).expect("the layers' cycle");
    assert!(found.contains(&"media".to_owned()), "{found:?}");
}

/// The imports of `layers` that do not go to a module earlier in `order`, and the
/// modules `order` does not place, as messages.
fn out_of_order(layers: &Graph, order: &[&str]) -> Vec<String> {
    let place = |m: &str| order.iter().position(|o| *o == m);
    let mut wrong = Vec::new();
    for (module, edges) in layers {
        let Some(at) = place(module) else {
            wrong.push(format!("{module} has no place in the order"));
            continue;
        };
        for target in edges {
            if place(target).is_none_or(|t| t >= at) {
                wrong.push(format!("{module} imports {target}, which comes after it"));
            }
        }
    }
    wrong
}

#[test]
fn avsoak_modules_import_only_modules_before_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let layers = layers(&graph(&root.join("avsoak/src")));
    let wrong = out_of_order(&layers, AVSOAK_ORDER);
    assert!(wrong.is_empty(), "avsoak/src: {wrong:#?}");
}

/// The order check's control: an import of a later module, and a module the order does
/// not place, are both named.
#[test]
fn an_import_against_the_order_is_named() {
    let mut layers = Graph::new();
    layers.entry("fmt".into()).or_default();
    layers
        .entry("report".into())
        .or_default()
        .insert("fmt".into());
    assert!(out_of_order(&layers, &["fmt", "report"]).is_empty());
    layers
        .entry("fmt".into())
        .or_default()
        .insert("report".into());
    layers.entry("extra".into()).or_default();
    let wrong = out_of_order(&layers, &["fmt", "report"]);
    assert_eq!(
        wrong,
        [
            "extra has no place in the order",
            "fmt imports report, which comes after it"
        ],
        "{wrong:?}"
    );
}
