//! The layout's rules, checked on the source: which top-level module may import which,
//! where sled and git2 may appear, and that the modules form no cycle. A change that
//! reaches back up the chain fails here, before review.
//!
//! Only non-test code counts: a file's `#[cfg(test)]` tail and `tests.rs` files may
//! use whatever helps them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its non-test code names (`crate::x`).
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Each module's non-test source, by its path under `src/`.
fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                let rel = path.strip_prefix(&root).expect("under src").to_owned();
                out.push((rel, code_of(&text)));
            }
        }
    }
    out
}

/// The text before the test module, without `//` comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`runner/git/mirror.rs` → `runner`).
fn top_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_owned()
}

/// The `crate::x` names in `code`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(i, _)| {
            !code[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
        })
        .map(|(i, m)| {
            code[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn graph() -> Graph {
    let mut graph = Graph::new();
    for (rel, code) in sources() {
        let top = top_of(&rel);
        if top == "lib" || top == "main" {
            continue;
        }
        let refs = graph.entry(top.clone()).or_default();
        refs.extend(crate_refs(&code).into_iter().filter(|r| *r != top));
    }
    graph
}

fn assert_imports_none(graph: &Graph, module: &str, forbidden: &[&str]) {
    let refs = graph.get(module).expect("module exists");
    let bad: Vec<_> = forbidden.iter().filter(|f| refs.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "{module} must not import {bad:?} (it imports {refs:?})"
    );
}

#[test]
fn store_and_runner_import_nothing_above_them() {
    let graph = graph();
    let above_store = [
        "outbound",
        "http",
        "intake",
        "hook",
        "runner",
        "admin",
        "scheduler",
        "app",
        "daemon",
    ];
    assert_imports_none(&graph, "store", &above_store);
    let above_runner = [
        "http",
        "intake",
        "admin",
        "store",
        "app",
        "scheduler",
        "daemon",
    ];
    assert_imports_none(&graph, "runner", &above_runner);
    assert_imports_none(&graph, "runner", &["metrics"]);
}

#[test]
fn admin_and_web_stay_off_the_build_machinery() {
    // Logs are read through `paths`, URLs redacted by `feed`, repositories checked
    // through `App::check_repo`: neither side imports the runner or the daemon.
    let graph = graph();
    let machinery = ["runner", "http", "intake", "daemon"];
    assert_imports_none(&graph, "admin", &machinery);
    assert_imports_none(&graph, "admin", &["web"]);
    assert_imports_none(&graph, "web", &machinery);
    assert_imports_none(&graph, "web", &["store"]);
}

#[test]
fn outbound_stays_off_the_request_and_build_machinery() {
    // The outbox's sender reads the store and the settings and posts to forges; it
    // never reaches into the webhook path, the admin side or the runner (and sled
    // stays in the store, checked below).
    let graph = graph();
    let forbidden = [
        "http",
        "intake",
        "admin",
        "runner",
        "web",
        "daemon",
        "scheduler",
    ];
    assert_imports_none(&graph, "outbound", &forbidden);
}

#[test]
fn systemd_stays_off_the_build_machinery() {
    // The listener it takes over is marked close-on-exec through `fd`, which the
    // runner uses too: start-up plumbing never reaches into the runner.
    let graph = graph();
    assert_imports_none(&graph, "systemd", &["runner", "scheduler", "store"]);
}

#[test]
fn hook_is_pure() {
    let graph = graph();
    let allowed: BTreeSet<String> = ["build", "feed", "secret"].map(String::from).into();
    let refs = &graph["hook"];
    let above: Vec<_> = refs.difference(&allowed).collect();
    assert!(above.is_empty(), "hook imports {above:?}");
}

/// Whether a path under `src/` lies under the module `dir`.
fn under(rel: &Path, dir: &str) -> bool {
    rel.starts_with(dir) || rel == Path::new(&format!("{dir}.rs"))
}

#[test]
fn sled_only_in_store_and_git2_only_in_runner() {
    for (rel, code) in sources() {
        for (krate, home) in [("sled", "store"), ("git2", "runner")] {
            let used =
                code.contains(&format!("{krate}::")) || code.contains(&format!("use {krate}"));
            assert!(
                !used || under(&rel, home),
                "{} uses {krate}, which belongs in src/{home}/",
                rel.display()
            );
        }
    }
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = graph();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(&graph, node, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_checks_see_imports() {
    // Guards the checks themselves: a reader that found nothing would pass everything.
    assert_eq!(
        crate_refs("use crate::store::Store;\nlet x = crate::app::App::new();"),
        ["app", "store"].map(String::from).into()
    );
    assert_eq!(
        code_of("use a; // crate::x\n#[cfg(test)]\nuse crate::y;"),
        "use a; "
    );
    let graph = graph();
    assert!(graph["scheduler"].contains("runner"), "{graph:?}");
    assert!(graph["http"].contains("intake"), "{graph:?}");
}

/// The identifiers in `text`.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// The text of main.rs, the tests and the benches: the code outside the library.
fn outside_code() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("src/main.rs")).expect("main.rs");
    let mut dirs = vec![root.join("tests"), root.join("benches")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text += &std::fs::read_to_string(&path).expect("source is UTF-8");
            }
        }
    }
    text
}

/// Each plain `pub` item in `code` (not `pub(crate)`, not a re-export): its name and
/// the text it shows the world (a function's signature, a type's body, a field's line).
fn pub_items(code: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut items = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("pub ") else {
            continue;
        };
        let rest = rest
            .trim_start_matches("async ")
            .trim_start_matches("unsafe ");
        let mut parts = rest.splitn(2, ' ');
        let (kind, after) = (parts.next().unwrap_or_default(), parts.next());
        let name: String = match (kind, after) {
            ("use", _) => continue,
            ("fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "mod", Some(a)) => {
                a
            }
            (field, _) => field,
        }
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
        // What it shows: up to its body for a function, through its body for a type.
        let shown_to = if matches!(kind, "struct" | "enum" | "trait") {
            let indent = line.len() - line.trim_start().len();
            lines[i + 1..]
                .iter()
                .position(|l| l.len() > indent && l[indent..].starts_with('}'))
                .map_or(i, |n| i + 1 + n)
        } else if kind.ends_with(':') {
            i
        } else {
            lines[i..]
                .iter()
                .position(|l| l.contains('{') || l.contains(';'))
                .map_or(i, |n| i + n)
        };
        items.push((name, lines[i..=shown_to].join("\n")));
    }
    items
}

#[test]
fn pub_only_what_main_tests_and_benches_name() {
    // `pub(crate)` is the default: a plain `pub` item must be named outside the library
    // (main.rs, tests/, benches/) or be part of what another `pub` item shows (a public
    // function's error type). Names are compared as words: cheap, and strict enough to
    // catch the usual slip of a new `pub fn` that only the crate calls.
    let items: Vec<(PathBuf, String, String)> = sources()
        .into_iter()
        .filter(|(rel, _)| rel != Path::new("main.rs"))
        .flat_map(|(rel, code)| {
            pub_items(&code)
                .into_iter()
                .map(move |(name, shown)| (rel.clone(), name, shown))
        })
        .collect();
    let outside = words(&outside_code());
    let needless: Vec<String> = items
        .iter()
        .filter(|(_, name, _)| !outside.contains(name))
        .filter(|(_, name, _)| {
            !items
                .iter()
                .any(|(_, other, shown)| other != name && words(shown).contains(name))
        })
        .map(|(rel, name, _)| format!("{}: {name}", rel.display()))
        .collect();
    assert!(
        needless.is_empty(),
        "pub items that only the crate uses; make them pub(crate): {needless:?}"
    );
}

#[test]
fn the_pub_check_sees_items() {
    let code = "pub fn open(p: &Path) -> Result<Store, StoreError> {\n}\npub(crate) fn x() {}\n\
                pub enum Pick {\n    Start(Build),\n}\npub use a::B;\nstruct S {\n    pub id: u64,\n}";
    let items = pub_items(code);
    let names: Vec<_> = items.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["open", "Pick", "id"]);
    assert!(words(&items[0].1).contains("StoreError"), "{items:?}");
    assert!(words(&items[1].1).contains("Build"), "{items:?}");
    let store: Vec<_> = pub_items(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/mod.rs"))
            .expect("store source"),
    )
    .into_iter()
    .map(|(n, _)| n)
    .collect();
    assert!(store.contains(&"Store".to_owned()), "{store:?}");
}
