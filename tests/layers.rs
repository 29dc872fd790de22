//! The crate's layers, enforced: a module never names a module above it, and peers that must
//! not know each other (the store client and the master server) never name each other.
//! docs/ARCHITECTURE.md ("Layers") explains the order; this file is its rule.
//!
//! A module is a top-level entry of `src/` (`src/<m>.rs` or `src/<m>/`; `src/bin/` counts as
//! `bin`). A file "names" module `B` when its code or doc comments (intra-doc links are paths
//! too) contain `crate::B`, `mooncake::B`, `B` inside a grouped `use crate::{…}`, or a
//! `super::` chain that climbs out of its own top-level module to `B`. Plain `//` comments and
//! string literals are not read: they are prose and data, not paths.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Layers from the top; a module may name modules of its own layer or of any layer below.
const LAYERS: &[&[&str]] = &[
    &["ffi", "cli", "bench", "bin"],
    &["store", "master"],
    &["engine"],
    &["transport"],
    &["metadata"],
    &["topology"],
    &["config", "runtime", "logging", "gflags", "error", "sys", "proto"],
];

/// `(a, b)`: `a` never names `b` even though the layers allow it; `"*"` is every other module.
const NEVER: &[(&str, &str)] = &[
    // The client and the server share only the protocol (`proto`).
    ("store", "master"),
    ("master", "store"),
    // Thin wrappers of the OS and the wire format know nothing of the crate.
    ("sys", "*"),
    ("proto", "*"),
];

/// Generated bindings: no crate paths, and too large to be worth reading.
const SKIPPED: &[&str] = &["src/transport/rdma/verbs/bindings.rs"];

/// One path in a file that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: `{}` names `{}` ({})", self.file, self.line, self.from, self.to, self.why)
    }
}

/// The layer of `module` (0 is the top), if the table has it.
fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Why `from` may not name `to`, or `None` when it may.
fn forbidden(from: &str, to: &str) -> Option<String> {
    if from == to {
        return None;
    }
    let Some(a) = layer(from) else { return Some(format!("`{from}` is missing from LAYERS in tests/layers.rs")) };
    let Some(b) = layer(to) else { return Some(format!("`{to}` is missing from LAYERS in tests/layers.rs")) };
    if b < a {
        return Some(format!("layer {b} is above layer {a}"));
    }
    NEVER
        .iter()
        .find(|(x, y)| *x == from && (*y == to || *y == "*"))
        .map(|(x, y)| format!("rule ({x} never names {y})"))
}

/// The top-level module of a file under `src/`, and its module path depth from the crate root
/// (`src/a.rs` and `src/a/mod.rs`: 1; `src/a/b.rs`: 2), or `None` for the crate root itself.
fn module_of(relative: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [file] if file == "lib.rs" => None,
        [file] => Some((file.trim_end_matches(".rs").to_string(), 1)),
        // Each binary is a crate root of its own: `mooncake::` is how it names the library.
        [dir, ..] if dir == "bin" => Some(("bin".to_string(), 0)),
        [dir, rest @ ..] => {
            let last = rest.last().unwrap();
            let depth = if last == "mod.rs" { rest.len() } else { rest.len() + 1 };
            Some((dir.clone(), depth))
        }
        [] => None,
    }
}

/// `text` with string and char literals blanked, and comments blanked too except, when
/// `keep_docs`, doc comments. Newlines stay, so offsets keep their line numbers.
fn blank(text: &str, keep_docs: bool) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
            let doc = (rest.starts_with(b"///") && !rest.starts_with(b"////")) || rest.starts_with(b"//!");
            if !(doc && keep_docs) {
                wipe(&mut out, i, end);
            }
            i = end;
        } else if rest.starts_with(b"/*") {
            let doc = (rest.starts_with(b"/**") && !rest.starts_with(b"/**/")) || rest.starts_with(b"/*!");
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            if !(doc && keep_docs) {
                wipe(&mut out, i, j);
            }
            i = j;
        } else if b[i] == b'r' && raw_start(b, i) && rest.len() > 1 && (rest[1] == b'#' || rest[1] == b'"') {
            // A raw string r"…", r#"…"# (or br, cr); `r#ident` is a raw identifier, left alone.
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let body = i + 2 + hashes;
            let end =
                b[body..].windows(close.len()).position(|w| w == close).map_or(b.len(), |n| body + n + close.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{7f}', 'é'); otherwise a lifetime or label.
            let len = if rest.get(1) == Some(&b'\\') {
                // The escaped character itself may be a quote ('\''): search after it.
                rest.iter().skip(3).position(|&c| c == b'\'').map(|n| n + 4)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(n) => {
                    wipe(&mut out, i, i + n);
                    i += n;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: it replaces whole characters' bytes only inside literals")
}

/// Whether the `r` at `i` starts a raw string's prefix: nothing of an identifier before it but
/// a lone `b` or `c` (`br"…"`, `cr"…"`).
fn raw_start(b: &[u8], i: usize) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match i {
        0 => true,
        1 => !ident(b[0]) || b[0] == b'b' || b[0] == b'c',
        _ => !ident(b[i - 1]) || ((b[i - 1] == b'b' || b[i - 1] == b'c') && !ident(b[i - 2])),
    }
}

/// The line (1-based) of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&c| c == b'\n').count() + 1
}

/// The identifier starting at `at` (after blanks), and where it ends.
fn ident_at(text: &str, at: usize) -> Option<(&str, usize)> {
    let start = at + text[at..].len() - text[at..].trim_start().len();
    let len = text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len() - start);
    (len > 0).then(|| (&text[start..start + len], start + len))
}

/// The first identifier of each item of the group `{…}` opening at `open`, with its offset:
/// `{a, b::{c, d}, e as f, self}` gives `a`, `b`, `e`, `self`.
fn group_heads(text: &str, open: usize) -> Vec<(&str, usize)> {
    let mut heads = Vec::new();
    let (mut depth, mut item_start) = (0usize, open + 1);
    for (k, c) in text[open..].char_indices() {
        let at = open + k;
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                if let Some((name, _)) = ident_at(text, item_start) {
                    let offset = item_start + text[item_start..].find(name).unwrap_or(0);
                    heads.push((name, offset));
                }
                if c == '}' {
                    break;
                }
                item_start = at + 1;
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    heads
}

/// The inline `mod name {` blocks open at each offset of `code` (comments and strings already
/// blanked): how many extra `super::` a path there needs to leave its file's module.
fn inline_depths(code: &str) -> Vec<usize> {
    let mut depths = vec![0; code.len() + 1];
    let mut stack: Vec<bool> = Vec::new(); // per open brace: whether it opened an inline mod
    let mut inline = 0;
    let bytes = code.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        depths[i] = inline;
        match c {
            b'{' => {
                let before = code[..i].trim_end();
                let is_mod = before
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .nth(1)
                    .is_some_and(|w| w == "mod");
                stack.push(is_mod);
                if is_mod {
                    inline += 1;
                }
            }
            // The guard pops every closing brace; only an inline mod's lowers the depth.
            b'}' if stack.pop() == Some(true) => inline -= 1,
            _ => {}
        }
    }
    depths[code.len()] = inline;
    depths
}

/// The modules the source `text` of module `module` names (at depth `depth` from the crate
/// root), each with the byte offset of the name. `known` is the crate's top-level modules.
fn names<'a>(text: &'a str, depth: usize, known: &BTreeSet<String>) -> Vec<(&'a str, usize)> {
    let mut found = Vec::new();
    let boundary = |at: usize| at == 0 || !text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
    for root in ["crate::", "mooncake::"] {
        for (at, _) in text.match_indices(root).filter(|(at, _)| boundary(*at)) {
            let after = at + root.len();
            let rest = text[after..].trim_start();
            if rest.starts_with('{') {
                let open = after + text[after..].len() - rest.len();
                found.extend(group_heads(text, open));
            } else if let Some((name, _)) = ident_at(text, after) {
                found.push((name, at));
            }
        }
    }
    // `super::` chains: with comments and strings blanked, count inline modules too.
    let code = blank(text, false);
    let inline = inline_depths(&code);
    for (at, _) in code.match_indices("super::").filter(|(at, _)| boundary(*at)) {
        if at >= 7 && code[..at].ends_with("super::") {
            continue; // the middle of a chain: counted from its first `super::`
        }
        let mut end = at;
        let mut climbs = 0;
        while code[end..].starts_with("super::") {
            climbs += 1;
            end += "super::".len();
            end += code[end..].len() - code[end..].trim_start().len();
        }
        if climbs < depth + inline[at] {
            continue; // stays inside its own top-level module
        }
        if code[end..].starts_with('{') {
            found.extend(group_heads(text, end));
        } else if let Some((name, _)) = ident_at(text, end) {
            found.push((name, at));
        }
    }
    found.retain(|(name, _)| known.contains(*name));
    found
}

/// Every violation in the source `text` of `file` (relative to `src/`).
fn check_source(file: &Path, text: &str, known: &BTreeSet<String>) -> Vec<Violation> {
    let Some((module, depth)) = module_of(file) else { return Vec::new() };
    let scanned = blank(text, true);
    let mut out = Vec::new();
    for (to, at) in names(&scanned, depth, known) {
        if let Some(why) = forbidden(&module, to) {
            out.push(Violation {
                file: Path::new("src").join(file).display().to_string(),
                line: line_of(&scanned, at),
                from: module.clone(),
                to: to.to_string(),
                why,
            });
        }
    }
    out
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

/// The crate's top-level modules, from the directory: `src/<m>.rs` and `src/<m>/`.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if p.is_dir() { Some(name) } else { name.strip_suffix(".rs").filter(|n| *n != "lib").map(String::from) }
        })
        .collect()
}

/// A cycle in the graph of which module names which, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut c = path[start..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn every_module_names_only_modules_at_or_below_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = top_level_modules(&src);
    let listed: BTreeSet<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| m.to_string())).collect();
    let missing: Vec<&String> = known.difference(&listed).collect();
    assert!(missing.is_empty(), "modules missing from LAYERS in tests/layers.rs: {missing:?}");

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        if SKIPPED.iter().any(|s| Path::new(s) == Path::new("src").join(relative)) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        violations.extend(check_source(relative, &text, &known));
        if let Some((module, depth)) = module_of(relative) {
            for (to, _) in names(&blank(&text, true), depth, &known) {
                if to != module {
                    edges.entry(module.clone()).or_default().insert(to.to_string());
                }
            }
        }
    }
    assert!(files.len() > 50, "read only {} files: is src/ where it should be?", files.len());
    for v in &violations {
        eprintln!("{v}");
    }
    assert!(violations.is_empty(), "{} upward or forbidden names (listed above)", violations.len());
    assert_eq!(cycle(&edges), None, "modules that name each other in a circle");
}

#[cfg(test)]
mod checker {
    use super::*;

    fn known() -> BTreeSet<String> {
        LAYERS.iter().flat_map(|l| l.iter().map(|m| m.to_string())).collect()
    }

    fn check(file: &str, text: &str) -> Vec<String> {
        check_source(Path::new(file), text, &known())
            .iter()
            .map(|v| format!("{}:{}:{}", v.file, v.line, v.to))
            .collect()
    }

    #[test]
    fn an_upward_import_is_reported_with_its_line() {
        let text = "//! Mapping.\n\nuse std::io;\nuse crate::store::{ErrorCode, StoreError};\n";
        assert_eq!(check("transport/mapping.rs", text), ["src/transport/mapping.rs:4:store"]);
        assert_eq!(
            check("config.rs", "fn f() { crate::topology::filter::parse_list(\"\"); }"),
            ["src/config.rs:1:topology"]
        );
    }

    #[test]
    fn grouped_imports_are_read_item_by_item() {
        let text = "use crate::{\n    config::Config,\n    engine::{self, Error},\n    error,\n};\n";
        assert_eq!(check("metadata/kv.rs", text), ["src/metadata/kv.rs:3:engine"]);
        assert!(check("engine/mod.rs", text).is_empty(), "the engine may name all three");
    }

    #[test]
    fn super_chains_that_leave_the_module_count() {
        // src/topology/pages.rs is `crate::topology::pages`: two `super::` reach the root.
        assert_eq!(
            check("topology/pages.rs", "use super::super::engine::Error;\n"),
            ["src/topology/pages.rs:1:engine"]
        );
        assert!(check("topology/pages.rs", "use super::sysfs;\n").is_empty());
        // In an inline test module a third one is needed.
        let text = "mod tests {\n    use super::super::engine;\n    use super::super::super::store;\n}\n";
        assert_eq!(check("topology/pages.rs", text), ["src/topology/pages.rs:3:store"]);
        assert_eq!(
            check("sys/mod.rs", "use super::{config, proto};\n"),
            ["src/sys/mod.rs:1:config", "src/sys/mod.rs:1:proto"]
        );
    }

    #[test]
    fn peers_and_leaves_have_their_own_rules() {
        assert_eq!(check("store/client.rs", "use crate::master::proto::Request;\n"), ["src/store/client.rs:1:master"]);
        assert_eq!(check("master/server.rs", "use crate::store::StoreError;\n"), ["src/master/server.rs:1:store"]);
        assert!(check("store/client.rs", "use crate::proto::Request;\n").is_empty());
        assert_eq!(check("proto/mod.rs", "use crate::error::Error;\n"), ["src/proto/mod.rs:1:error"]);
        assert!(check("ffi/store.rs", "use crate::{cli, store, master};\n").is_empty(), "the top names anything");
        assert_eq!(
            check("bin/mooncake_master.rs", "fn main() { mooncake::cli::master::main() }"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn docs_count_but_prose_and_strings_do_not() {
        assert_eq!(
            check("sys/mapping.rs", "/// As [`crate::store::Store`] maps it.\nfn f() {}\n"),
            ["src/sys/mapping.rs:1:store"]
        );
        let text = concat!(
            "// crate::store would be wrong here\n",
            "const S: &str = \"crate::store\";\n",
            "const R: &str = r#\"mooncake::engine\"#;\n",
            "fn f<'a>(c: char) -> bool { c == '\"' }\n",
        );
        assert!(check("sys/mapping.rs", text).is_empty(), "{:?}", check("sys/mapping.rs", text));
        assert!(check("sys/mapping.rs", "use crate::VERSION;\nfn f() { mycrate::store::x() }\n").is_empty());
        let text = "const Q: char = '\\'';\nconst B: &[u8] = br\"\\\";\nuse crate::store;\n";
        assert_eq!(
            check("sys/mapping.rs", text),
            ["src/sys/mapping.rs:3:store"],
            "escaped quotes end where they should"
        );
    }

    #[test]
    fn cycles_are_found() {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        edges.entry("config".into()).or_default().insert("topology".into());
        assert_eq!(cycle(&edges), None);
        edges.entry("topology".into()).or_default().insert("config".into());
        assert_eq!(cycle(&edges), Some(vec!["config".into(), "topology".into(), "config".into()]));
    }

    #[test]
    fn unknown_modules_must_join_the_table() {
        assert!(forbidden("newthing", "config").unwrap().contains("missing from LAYERS"));
        assert_eq!(module_of(Path::new("lib.rs")), None);
        assert_eq!(module_of(Path::new("store/dummy/wire.rs")), Some(("store".into(), 3)));
        assert_eq!(module_of(Path::new("store/dummy/mod.rs")), Some(("store".into(), 2)));
    }
}
