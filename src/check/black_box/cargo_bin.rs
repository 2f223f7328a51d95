//! A Rust consumer program as it ships: [`BlackBox::cargo_bin`] builds a workspace binary
//! with `cargo build -p <package> --bin <bin>` (the production build: no dev-dependencies, so
//! nothing of the kit is linked in) and verifies that executable.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BlackBox, BlackBoxError};

impl BlackBox {
    /// The binary `bin` of the workspace package `package`, built with `cargo build -p
    /// <package> --bin <bin>` in the current directory's workspace (under `cargo test`, the
    /// package's own directory; the `CARGO` that runs the test builds it, in the same target
    /// directory, in the same profile as a plain `cargo build`).
    ///
    /// ```no_run
    /// use effectively_once::Semantics;
    /// use effectively_once::check::BlackBox;
    ///
    /// let mut service = BlackBox::cargo_bin("notification-consumer", "notification-consumer")
    ///     .unwrap_or_else(|e| panic!("{e}"));
    /// service
    ///     .env("KAFKA_BROKERS", "{bootstrap}")
    ///     .env("EMAIL_API_URL", "{effects_url}/effects/email");
    /// println!("{}", service.check(Semantics::EffectivelyOnce).unwrap_or_else(|e| panic!("{e}")));
    /// ```
    pub fn cargo_bin(package: &str, bin: &str) -> Result<BlackBox, BlackBoxError> {
        let executable = build(package, bin, Path::new("."))?;
        Ok(BlackBox::command([executable
            .to_string_lossy()
            .into_owned()]))
    }
}

/// Builds `bin` of `package` from `dir` and returns the executable's path.
fn build(package: &str, bin: &str, dir: &Path) -> Result<PathBuf, BlackBoxError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command = format!("cargo build -p {package} --bin {bin}");
    let out = Command::new(&cargo)
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json",
        ])
        .current_dir(dir)
        .output()
        .map_err(|e| BlackBoxError::Process(format!("could not run `{command}`: {e}")))?;
    if !out.status.success() {
        return Err(BlackBoxError::Process(format!(
            "`{command}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| {
            BlackBoxError::Process(format!("`{command}` named no executable for `{bin}`"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_that_is_not_in_the_workspace_is_refused_with_cargos_words() {
        let error = BlackBox::cargo_bin("no-such-package-here", "x").expect_err("no such package");
        let text = error.to_string();
        assert!(
            text.contains("cargo build -p no-such-package-here --bin x` failed"),
            "{text}"
        );
        assert!(text.contains("no-such-package-here"), "{text}");
    }
}
