//! Where a picture is written: `<target dir>/effectively-once/<name>.html`, the name derived
//! from the test that failed and the invariant it broke, so the same check writes the same
//! file and the report names the same path.

use std::io;
use std::path::{Path, PathBuf};

/// Why a picture could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PictureError {
    /// The directory could not be created.
    #[error("could not create {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: String,
        /// The error.
        source: io::Error,
    },
    /// The file could not be written.
    #[error("could not write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else the directory cargo marked
/// with `CACHEDIR.TAG` that holds the running executable (`target/debug/deps/x`,
/// `target/debug/examples/x`), else `./target` (a doctest runs from a temporary directory).
pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| target_of(&exe))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The target directory an executable built by cargo sits in: the nearest of its first
/// ancestors that cargo marked with `CACHEDIR.TAG`.
fn target_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .skip(1)
        .take(5)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
}

/// `name` with everything but ASCII letters, digits, `-`, `_` and `.` replaced by `_`, `::`
/// by `.`, and cut to a length every file system accepts.
fn sanitize(name: &str) -> String {
    let name = name.replace("::", ".");
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out = out.trim_matches('.').to_string();
    out.truncate(150);
    out
}

/// The executable's name without cargo's `-<hash>` suffix (`zoo-3f2a…` is `zoo`).
fn program(exe: &Path) -> Option<String> {
    let stem = exe.file_stem()?.to_str()?;
    Some(match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem.to_string(),
    })
}

/// The file name of the picture of a check that broke `invariant`, run by the executable `exe`
/// on the thread named `thread` (libtest names a test's thread after the test's path; a
/// program's main thread is `main`): `zoo.verdicts.some_test.effectively-once.html`.
pub(crate) fn file_name(exe: Option<&Path>, thread: Option<&str>, invariant: &str) -> String {
    let mut parts = Vec::new();
    if let Some(program) = exe.and_then(program) {
        parts.push(program);
    }
    if let Some(thread) = thread.filter(|t| *t != "main" && !t.is_empty()) {
        parts.push(thread.to_string());
    }
    if parts.is_empty() {
        parts.push("check".into());
    }
    parts.push(invariant.to_string());
    let name = sanitize(&parts.join("::"));
    format!("{}.html", if name.is_empty() { "check" } else { &name })
}

/// Writes `html` to `dir/effectively-once/name`, through a temporary file renamed into place
/// (a reader never sees half a page; two processes writing the same page do not mix).
pub(crate) fn write(dir: &Path, name: &str, html: &str) -> Result<PathBuf, PictureError> {
    let dir = dir.join("effectively-once");
    std::fs::create_dir_all(&dir).map_err(|source| PictureError::CreateDir {
        dir: dir.display().to_string(),
        source,
    })?;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written =
        std::fs::write(&temporary, html).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(PictureError::Write {
            path: path.display().to_string(),
            source,
        });
    }
    Ok(path)
}

/// `path` as the report prints it: relative to the working directory when it is inside it
/// (`target/effectively-once/x.html` under `cargo test`), else as it is.
pub(crate) fn shown(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_is_named_after_the_program_the_test_and_the_invariant() {
        let exe = Path::new("/w/target/debug/deps/zoo-0123456789abcdef");
        assert_eq!(
            file_name(Some(exe), Some("verdicts::a_test"), "effectively-once"),
            "zoo.verdicts.a_test.effectively-once.html"
        );
        let example = Path::new("/w/target/debug/examples/notification_service");
        assert_eq!(
            file_name(Some(example), Some("main"), "at-least-once"),
            "notification_service.at-least-once.html"
        );
        assert_eq!(
            file_name(None, Some("a/b c<d>"), "x"),
            "a_b_c_d_.x.html",
            "anything outside [A-Za-z0-9._-] is replaced"
        );
    }

    #[test]
    fn the_target_directory_is_the_one_cargo_marked() {
        let target = std::env::temp_dir().join(format!("eo-target-{}", std::process::id()));
        std::fs::create_dir_all(target.join("debug/deps")).unwrap();
        std::fs::write(
            target.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        let test = target.join("debug/deps/zoo-0123456789abcdef");
        let example = target.join("debug/examples/notification_service");
        let found = (target_of(&test), target_of(&example));
        let _ = std::fs::remove_dir_all(&target);
        assert_eq!(found, (Some(target.clone()), Some(target)));
        assert_eq!(target_of(Path::new("/nowhere/rustdoctest/rust_out")), None);
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_an_error_not_a_panic() {
        let file = std::env::temp_dir().join(format!("eo-picture-{}", std::process::id()));
        std::fs::write(&file, "a file, not a directory").unwrap();
        let result = write(&file, "x.html", "<html></html>");
        let _ = std::fs::remove_file(&file);
        let error = result.expect_err("a file where the directory should be");
        assert!(
            error.to_string().starts_with("could not create "),
            "{error}"
        );
    }
}
