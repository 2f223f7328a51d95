//! The crate's dependency rules (the README's Layout): data flows down from scenarios through
//! the run and its backends to the history, and never back up; a backend knows nothing of
//! another, and the run knows none of them (only `simulation` picks one). This test reads the
//! sources and fails, naming the file and line, when a module imports one it must not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which crate modules each module (or single file) may use. Modules not listed are free.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "history",
        &[],
        "the history is plain data: the vocabulary of what happened, below everything",
    ),
    (
        "scenario",
        &["history"],
        "a scenario is data: events and faults anchored to them, resolved at run time; it \
         knows neither the run nor a backend",
    ),
    (
        "invariant",
        &["history", "ledger"],
        "invariants are pure functions of the history and the ledger",
    ),
    (
        "ledger",
        &["history"],
        "the ledger records effects from the history; it knows nothing of runs or backends",
    ),
    (
        "client",
        &["history"],
        "the client traits are the API consumers are written against, with librdkafka's own \
         client-side semantics (partitioners, transactional errors); nothing of runs or backends",
    ),
    (
        "run",
        &["history", "scenario", "client", "error"],
        "the run owns instances, the fault plan, the interception step and the driver; it drives \
         a backend through one trait and knows none of them",
    ),
    (
        "sim",
        &["history", "run", "client", "error"],
        "the simulated cluster is a backend: it knows the run's interface, nothing of librdkafka \
         or of another backend",
    ),
    (
        "broker",
        &["history", "run", "client", "error"],
        "librdkafka's backend knows the run's interface, nothing of the simulator",
    ),
    (
        "process",
        &["history", "ledger"],
        "the parts that run consumer processes (supervisor, effect service) record into the \
         ledger in the history's vocabulary; they know nothing of runs or backends",
    ),
    (
        "report",
        &["history", "invariant", "scenario", "ledger"],
        "the report's parts (timeline, picture, diagnoses) read a finished case: the history, \
         the scenario and the verdict",
    ),
    (
        "check/report.rs",
        &["history", "invariant", "scenario", "report"],
        "the report renders a finished verdict and its replay information",
    ),
];

/// Which modules may use a module at all: a backend is picked in one place.
const IMPORTERS: &[(&str, &[&str], &str)] = &[
    (
        "sim",
        &["simulation"],
        "only `simulation` picks a backend; everything else reaches the simulator through the \
         run's Backend trait",
    ),
    (
        "broker",
        &["simulation", "check", "error"],
        "only `simulation` picks a backend; the check names a broker to confirm verdicts on and \
         the crate's error wraps a broker's",
    ),
    (
        "simulation",
        &["check"],
        "`simulation` runs a Simulation on a backend; the check is its only caller inside the \
         crate",
    ),
];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a line names (`crate::history::X`, `crate::{a, b}`), outside comments.
fn crate_modules(line: &str) -> BTreeSet<String> {
    let code = line.split("//").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            for name in inner.split(',') {
                let name = name.trim().split("::").next().unwrap_or_default();
                if !name.is_empty() {
                    found.insert(name.to_string());
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
        rest = after;
    }
    found
}

/// The file's code without its unit tests (`#[cfg(test)]` modules sit at the end of a file).
fn without_tests(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].contains("mod "))
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, *l))
        .collect()
}

/// A source file: its path under `src/`, the top-level module it belongs to, its text.
struct Source {
    relative: String,
    module: String,
    text: String,
}

/// Every source file of the crate, in path order.
fn crate_sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|file| {
            let relative = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let module = relative
                .split('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(file).expect("readable source file");
            Source {
                relative,
                module,
                text,
            }
        })
        .collect()
}

#[test]
fn modules_import_only_what_the_architecture_allows() {
    let mut broken: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checked = BTreeSet::new();
    for Source {
        relative,
        module,
        text,
    } in &crate_sources()
    {
        for (rule, allowed, why) in RULES {
            let applies = if rule.ends_with(".rs") {
                relative == rule
            } else {
                module == rule
            };
            if !applies {
                continue;
            }
            checked.insert(*rule);
            for (number, line) in without_tests(text) {
                for used in crate_modules(line) {
                    if used != *module && !allowed.contains(&used.as_str()) {
                        broken
                            .entry(format!("{rule}: {why}"))
                            .or_default()
                            .push(format!(
                                "src/{relative}:{number} uses crate::{used}: {}",
                                line.trim()
                            ));
                    }
                }
            }
        }
        for (used_module, importers, why) in IMPORTERS {
            if module == used_module || importers.contains(&module.as_str()) {
                continue;
            }
            for (number, line) in without_tests(text) {
                if crate_modules(line).contains(*used_module) {
                    broken
                        .entry(format!("{used_module}: {why}"))
                        .or_default()
                        .push(format!("src/{relative}:{number} uses crate::{used_module}"));
                }
            }
        }
    }
    let missing: Vec<&&str> = RULES
        .iter()
        .map(|(rule, _, _)| rule)
        .filter(|rule| !checked.contains(**rule))
        .collect();
    assert!(
        missing.is_empty(),
        "rules about modules that do not exist: {missing:?}"
    );
    let report: Vec<String> = broken
        .iter()
        .map(|(rule, lines)| format!("{rule}\n  {}", lines.join("\n  ")))
        .collect();
    assert!(
        report.is_empty(),
        "dependency rules broken:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_rule_reader_finds_grouped_and_nested_imports() {
    assert_eq!(
        crate_modules("use crate::{history::X, ledger};"),
        ["history", "ledger"].map(String::from).into()
    );
    assert_eq!(
        crate_modules("let x = crate::sim::World::new(); // crate::broker"),
        ["sim"].map(String::from).into()
    );
}

/// The names `src/lib.rs` makes public at the crate root: `pub mod`s, `pub use`d items and
/// exported macros (the hidden macro support excluded).
fn root_names(lib: &str, macros: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut hidden = false;
    let mut statement = String::new();
    for line in lib.lines().map(str::trim) {
        if line == "#[doc(hidden)]" {
            hidden = true;
            continue;
        }
        if let Some(module) = line.strip_prefix("pub mod ") {
            names.push(module.trim_end_matches(';').to_string());
        } else if line.starts_with("pub use ") || !statement.is_empty() {
            statement.push_str(line);
            if !line.ends_with(';') {
                continue;
            }
            let list = std::mem::take(&mut statement);
            if hidden {
                hidden = false;
                continue;
            }
            let list = list.trim_end_matches(';');
            let items = match list.find('{') {
                Some(open) => list[open + 1..].trim_end_matches('}').to_string(),
                None => list.rsplit("::").next().unwrap_or_default().to_string(),
            };
            names.extend(
                items
                    .split(',')
                    .map(|n| n.trim().rsplit(' ').next().unwrap_or_default().to_string())
                    .filter(|n| !n.is_empty()),
            );
        }
        hidden = false;
    }
    let mut lines = macros.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "#[macro_export]" {
            let rule = lines.next().unwrap_or_default();
            if let Some(name) = rule.trim().strip_prefix("macro_rules! ") {
                let name = name.trim_end_matches(" {");
                if !name.starts_with('_') {
                    names.push(format!("{name}!"));
                }
            }
        }
    }
    names
}

#[test]
fn the_public_root_is_a_vocabulary_of_at_most_40_names() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let macros = std::fs::read_to_string(src.join("macros.rs")).expect("src/macros.rs");
    let names = root_names(&lib, &macros);
    assert!(
        names.contains(&"Verifier".to_string())
            && names.contains(&"assert_effectively_once!".to_string()),
        "the reader missed the root: {names:?}"
    );
    assert!(
        names.len() <= 40,
        "{} names at the root (at most 40; move the rest into a module): {names:?}",
        names.len()
    );
    // A module may share its name with an item (the `check` function and the `check` module
    // with the rest of the check API live in different namespaces); items may not repeat.
    let modules = lib
        .lines()
        .filter(|l| l.trim().starts_with("pub mod "))
        .count();
    let mut items = names[modules..].to_vec();
    items.sort();
    items.dedup();
    assert_eq!(
        items.len(),
        names.len() - modules,
        "an item is exported twice: {names:?}"
    );
}
