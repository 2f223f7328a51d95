//! The supervisor: starts the instances of a consumer command, captures their output, restarts
//! them after they die as a process supervisor would, and kills every child (with the
//! processes it started) when dropped, also when the kit panics.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::process_tree::kill_tree;
use super::{Callers, ProcessError};
use crate::history::{Incarnation, InstanceId};

/// The command that starts one instance of the consumer, e.g. `python3 consumer.py`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConsumerCommand {
    pub program: String,
    pub args: Vec<String>,
}

impl ConsumerCommand {
    /// The command whose words are `words` (the program first).
    pub(crate) fn new<S: AsRef<str>>(words: &[S]) -> Result<Self, ProcessError> {
        let mut words = words.iter().map(|w| w.as_ref().to_string());
        let program = words
            .next()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| {
                ProcessError::Command("the consumer command is empty: name a program to run".into())
            })?;
        Ok(ConsumerCommand {
            program,
            args: words.collect(),
        })
    }
}

impl std::fmt::Display for ConsumerCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// How one incarnation of an instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Killed by the kit (an injected crash, or the end of the run).
    Killed,
    /// It exited by itself with this code (`None`: killed by a signal the kit did not send).
    Exited(Option<i32>),
}

/// One incarnation's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Life {
    pub incarnation: Incarnation,
    /// When it started, since the run's start.
    pub started: Duration,
    /// When its end was seen.
    pub ended_at: Option<Duration>,
    /// Its stdout and stderr, interleaved as read.
    pub output: String,
    /// `None` while it runs.
    pub ended: Option<Ended>,
}

/// The instances' processes.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    monitors: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Shared {
    /// The run's start, which the lives' times count from.
    t0: Instant,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The running child of each instance.
    running: BTreeMap<InstanceId, Child>,
    /// Every incarnation, in start order.
    lives: Vec<Life>,
    /// Instances the kit killed whose death the monitor has not seen yet.
    killed: Vec<InstanceId>,
    /// The first error starting a process.
    failed: Option<ProcessError>,
    /// For each life (by index in `lives`), how many of its output pipes are still read.
    open_pipes: Vec<u8>,
}

/// How often a monitor looks whether its child died.
const LOOK: Duration = Duration::from_millis(5);

impl Supervisor {
    /// Starts `instances` instances of `command`, instance `i` with the variables
    /// `environment(i)`. An instance that dies is started again after `restart_after`, up to
    /// `max_restarts` times; one that exits by itself with code 0 is not. Times count from
    /// `t0`.
    pub(crate) fn start(
        t0: Instant,
        command: &ConsumerCommand,
        instances: u32,
        environment: impl Fn(InstanceId) -> Vec<(String, String)>,
        restart_after: Duration,
        max_restarts: u32,
    ) -> Result<Self, ProcessError> {
        let shared = Arc::new(Shared {
            t0,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let supervisor = Supervisor {
            shared: shared.clone(),
            monitors: Mutex::new(Vec::new()),
        };
        for i in 1..=instances {
            let instance = InstanceId(i);
            let env = environment(instance);
            let (command, shared) = (command.clone(), shared.clone());
            let (started, first_start) = std::sync::mpsc::channel();
            let monitor = std::thread::Builder::new()
                .name(format!("effectively-once-supervise-{i}"))
                .spawn(move || {
                    // Every incarnation starts on its monitor's thread, which outlives it: a
                    // child dies with the thread that started it (see `spawn`).
                    let first = Incarnation {
                        instance,
                        number: 1,
                    };
                    match spawn(&command, &env, first, &shared) {
                        Ok(child) => {
                            shared.lock().running.insert(instance, child);
                            let _ = started.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    }
                    monitor(
                        &command,
                        instance,
                        &env,
                        &shared,
                        restart_after,
                        max_restarts,
                    );
                })
                .map_err(|e| ProcessError::Command(format!("could not start a thread: {e}")))?;
            supervisor
                .monitors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(monitor);
            // The first start is checked here: a command that cannot start is an error now.
            first_start.recv().unwrap_or_else(|_| {
                Err(ProcessError::Command(
                    "the thread starting the consumer ended".into(),
                ))
            })?;
        }
        Ok(supervisor)
    }

    /// Whether every instance ended for good (none runs, none will be restarted).
    pub(crate) fn all_ended(&self) -> bool {
        self.monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(std::thread::JoinHandle::is_finished)
    }

    /// Every incarnation so far, in start order.
    pub(crate) fn lives(&self) -> Vec<Life> {
        self.shared.lock().lives.clone()
    }

    /// The first error restarting an instance, if any.
    pub(crate) fn failed(&self) -> Option<ProcessError> {
        self.shared.lock().failed.clone()
    }

    #[cfg(test)]
    /// Waits up to `timeout` until `done` holds for the lives so far; whether it did.
    pub(crate) fn wait_until(&self, timeout: Duration, done: impl Fn(&[Life]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if done(&state.lives) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Kills every instance and waits for the monitors; the lives are complete afterwards.
    pub(crate) fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let mut state = self.shared.lock();
            let instances: Vec<InstanceId> = state.running.keys().copied().collect();
            for instance in instances {
                kill_locked(&mut state, instance);
            }
        }
        let monitors: Vec<_> = self
            .monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for monitor in monitors {
            let _ = monitor.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Callers for Supervisor {
    fn incarnation(&self, instance: InstanceId) -> Incarnation {
        let state = self.shared.lock();
        state
            .lives
            .iter()
            .rev()
            .find(|l| l.incarnation.instance == instance)
            .map_or(
                Incarnation {
                    instance,
                    number: 1,
                },
                |l| l.incarnation,
            )
    }

    fn kill(&self, instance: InstanceId) {
        kill_locked(&mut self.shared.lock(), instance);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn kill_locked(state: &mut State, instance: InstanceId) {
    if let Some(child) = state.running.get_mut(&instance) {
        // SIGKILL: no handler runs, as in a crash; the processes it started die with it.
        kill_tree(child);
        state.killed.push(instance);
    }
}

/// Starts one incarnation, its output read into its [`Life`] by two threads. On Linux the child
/// is killed when the thread that started it ends, so a kit killed outright (a CI job's
/// timeout, `kill -9`) leaves no consumer behind; the monitors' threads outlive their children.
fn spawn(
    command: &ConsumerCommand,
    env: &[(String, String)],
    incarnation: Incarnation,
    shared: &Arc<Shared>,
) -> Result<Child, ProcessError> {
    let mut process = Command::new(&command.program);
    process
        .args(&command.args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    die_with_the_kit(&mut process);
    let mut child = process.spawn().map_err(|e| ProcessError::Spawn {
        command: command.to_string(),
        why: e.to_string(),
    })?;
    let life = {
        let mut state = shared.lock();
        state.lives.push(Life {
            incarnation,
            started: shared.t0.elapsed(),
            ended_at: None,
            output: String::new(),
            ended: None,
        });
        state.open_pipes.push(0);
        state.lives.len() - 1
    };
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for mut pipe in pipes.into_iter().flatten() {
        let shared = shared.clone();
        shared.lock().open_pipes[life] += 1;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                keep_tail(&mut shared.lock().lives[life].output, &text);
                shared.changed.notify_all();
            }
            shared.lock().open_pipes[life] -= 1;
            shared.changed.notify_all();
        });
    }
    shared.changed.notify_all();
    Ok(child)
}

/// Has the child started by `process` receive SIGKILL when the thread starting it ends (with
/// the kit or not), and not start at all if the kit is gone already.
#[cfg(target_os = "linux")]
fn die_with_the_kit(process: &mut Command) {
    use std::os::unix::process::CommandExt;
    let kit = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs in the forked child before `exec` and calls only
    // async-signal-safe functions (`prctl`, `getppid`); it allocates nothing.
    unsafe {
        process.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The kit died between the fork and the `prctl`: the child was adopted already.
            if libc::getppid() != kit {
                // (An OS error code: nothing may be allocated here.)
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The most output kept of one incarnation: a program that logs without end keeps its
/// latest output, not all of it.
const MAX_OUTPUT: usize = 256 * 1024;

/// What an incarnation's output starts with once its beginning was dropped.
const DROPPED: &str = "[... earlier output dropped ...]\n";

/// Appends `text` to `output`, dropping the oldest half when it grows past [`MAX_OUTPUT`].
fn keep_tail(output: &mut String, text: &str) {
    output.push_str(text);
    if output.len() > MAX_OUTPUT {
        let mut cut = output.len() - MAX_OUTPUT / 2;
        while !output.is_char_boundary(cut) {
            cut += 1;
        }
        let tail = output.split_off(cut);
        *output = format!("{DROPPED}{tail}");
    }
}

/// Watches one instance: records each incarnation's end and starts the next one.
fn monitor(
    command: &ConsumerCommand,
    instance: InstanceId,
    env: &[(String, String)],
    shared: &Arc<Shared>,
    restart_after: Duration,
    max_restarts: u32,
) {
    let mut number = 1;
    loop {
        let ended = loop {
            let mut state = shared.lock();
            let Some(child) = state.running.get_mut(&instance) else {
                return;
            };
            match child.try_wait() {
                Ok(Some(status)) => {
                    state.running.remove(&instance);
                    let by_kit = match state.killed.iter().position(|k| *k == instance) {
                        Some(at) => {
                            state.killed.remove(at);
                            true
                        }
                        None => false,
                    };
                    break if by_kit {
                        Ended::Killed
                    } else {
                        Ended::Exited(status.code())
                    };
                }
                Ok(None) => {}
                Err(_) => {
                    state.running.remove(&instance);
                    break Ended::Exited(None);
                }
            }
            drop(state);
            std::thread::sleep(LOOK);
        };
        let finished = ended == Ended::Exited(Some(0));
        let at = shared.t0.elapsed();
        let mut state = output_read(shared, instance);
        record_end(&mut state, instance, ended, at);
        drop(state);
        shared.changed.notify_all();
        if finished || number > max_restarts || shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(restart_after);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        number += 1;
        let incarnation = Incarnation { instance, number };
        match spawn(command, env, incarnation, shared) {
            Ok(child) => {
                let mut state = shared.lock();
                if shared.stopping.load(Ordering::SeqCst) {
                    // The stop came while this incarnation was starting: it did not see it
                    // running, so its end is recorded here.
                    drop(state);
                    let mut child = child;
                    kill_tree(&mut child);
                    let _ = child.wait();
                    let at = shared.t0.elapsed();
                    record_end(&mut shared.lock(), instance, Ended::Killed, at);
                    shared.changed.notify_all();
                    return;
                }
                state.running.insert(instance, child);
            }
            Err(e) => {
                shared.lock().failed.get_or_insert(e);
                shared.changed.notify_all();
                return;
            }
        }
    }
}

/// How long an ended incarnation's output is still read: its last lines are usually in the
/// pipes when its end is seen. A process it started may keep the pipes open; that one is not
/// waited for.
const OUTPUT_AFTER_END: Duration = Duration::from_secs(2);

/// The state once the latest incarnation of `instance` has no output left to read (or after
/// [`OUTPUT_AFTER_END`]).
fn output_read(shared: &Shared, instance: InstanceId) -> MutexGuard<'_, State> {
    let deadline = Instant::now() + OUTPUT_AFTER_END;
    let mut state = shared.lock();
    let Some(life) = state
        .lives
        .iter()
        .rposition(|l| l.incarnation.instance == instance)
    else {
        return state;
    };
    while state.open_pipes[life] > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        state = shared
            .changed
            .wait_timeout(state, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    state
}

/// Records how the latest incarnation of `instance` ended, and when (since the run's start).
fn record_end(state: &mut State, instance: InstanceId, ended: Ended, at: Duration) {
    if let Some(life) = state
        .lives
        .iter_mut()
        .rev()
        .find(|l| l.incarnation.instance == instance)
    {
        life.ended = Some(ended);
        life.ended_at = Some(at);
    }
}

#[cfg(test)]
mod output_tests {
    use super::{DROPPED, MAX_OUTPUT, keep_tail};

    #[test]
    fn endless_output_keeps_its_latest_part_and_says_the_rest_was_dropped() {
        let mut output = String::new();
        for n in 0..100_000 {
            keep_tail(&mut output, &format!("line {n} é\n"));
        }
        assert!(output.len() <= MAX_OUTPUT, "{}", output.len());
        assert!(output.starts_with(DROPPED));
        assert!(output.ends_with("line 99999 é\n"));
        let mut short = String::new();
        keep_tail(&mut short, "hello\n");
        assert_eq!(short, "hello\n");
    }
}
