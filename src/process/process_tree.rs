//! A consumer process with every process it started: what a crash kills. Many consumers run
//! behind a launcher (`npm start`, `poetry run`, a shell script ending without `exec`): killing
//! only the launcher would leave the consumer itself running, still in the group, while its
//! restarted twin joins beside it. A process supervisor kills the whole tree (a container,
//! a cgroup); so does the kit.
//!
//! The tree is frozen from the root down (SIGSTOP, then its children are listed, which a
//! stopped process cannot add to), then killed (SIGKILL). Descendants are found through
//! `/proc` on Linux; elsewhere only the process itself is killed.

use std::process::Child;

/// Kills `child` and every process descended from it at once (SIGKILL), as a crash would.
/// `child` must not have been waited for yet (its pid cannot have been reused).
pub(crate) fn kill_tree(child: &mut Child) {
    #[cfg(target_os = "linux")]
    if let Ok(root) = libc::pid_t::try_from(child.id()) {
        let tree = freeze(root);
        for pid in tree.iter().rev() {
            // SAFETY: `kill` only sends a signal; every pid here is `root` (not reaped yet) or
            // one of its descendants, stopped by `freeze` and so not yet reaped either.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
    let _ = child.kill();
}

/// Stops `root` and then, level by level, every process it started; the stopped pids, parents
/// before children.
#[cfg(target_os = "linux")]
fn freeze(root: libc::pid_t) -> Vec<libc::pid_t> {
    // SAFETY: see `kill_tree`.
    unsafe { libc::kill(root, libc::SIGSTOP) };
    let mut tree = vec![root];
    let mut level = vec![root];
    while !level.is_empty() {
        let next: Vec<libc::pid_t> = parents()
            .into_iter()
            .filter(|(pid, parent)| level.contains(parent) && !tree.contains(pid))
            .map(|(pid, _)| pid)
            .collect();
        for pid in &next {
            // SAFETY: a child of a stopped process is not reaped while it stays stopped.
            unsafe { libc::kill(*pid, libc::SIGSTOP) };
        }
        tree.extend(&next);
        level = next;
    }
    tree
}

/// Every process's pid with its parent's, read from `/proc/<pid>/stat`.
#[cfg(target_os = "linux")]
fn parents() -> Vec<(libc::pid_t, libc::pid_t)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_in_stat(&stat)?))
        })
        .collect()
}

/// The parent pid in a `/proc/<pid>/stat` line: `pid (name) state ppid …`, where the name may
/// hold spaces and parentheses, so the fields are counted after its last `)`.
#[cfg(any(target_os = "linux", test))]
fn parent_in_stat(stat: &str) -> Option<i32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parent_in_stat;

    #[test]
    fn the_parent_is_read_after_the_name_whatever_the_name_holds() {
        assert_eq!(parent_in_stat("42 (sh) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_in_stat("43 (my (odd) name) R 42 43"), Some(42));
        assert_eq!(parent_in_stat("garbage"), None);
    }
}
