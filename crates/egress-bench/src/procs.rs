//! Child processes (the simulator and the proxy) and what `/proc` says about them.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::BenchError;

/// A child process that is stopped (and reaped) when the guard is dropped: on a normal exit,
/// on an error, on a panic unwinding through `main`, and on Ctrl-C (the benchmark future is
/// dropped). SIGTERM first, so the proxy exits as it would in production (and a
/// `--features dhat-heap` build writes its profile); SIGKILL after [`STOP_GRACE`].
#[derive(Debug)]
pub struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let term = rustix::process::Pid::from_raw(self.child.id().cast_signed())
            .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
        if matches!(term, Some(Ok(()))) {
            let began = std::time::Instant::now();
            while matches!(self.child.try_wait(), Ok(None)) && began.elapsed() < STOP_GRACE {
                thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        eprintln!("[bench] stopped {} (pid {})", self.name, self.child.id());
    }
}

/// Which output stream carries a child's readiness line, and what the line contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyOn {
    Stdout(&'static str),
    Stderr(&'static str),
}

/// How long a child may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `cmd` and waits (up to [`READY_TIMEOUT`]) until the line `on` names appears.
///
/// The child's other output lines (the first few of each stream) are copied to our stderr
/// with a `[name]` prefix; the pipes are drained for the child's whole life, so it never
/// blocks on them.
/// Returns the guard and the readiness line.
pub fn spawn_until_ready(
    name: &'static str,
    mut cmd: Command,
    on: ReadyOn,
) -> Result<(ChildGuard, String), BenchError> {
    let (ready_on_stdout, needle) = match on {
        ReadyOn::Stdout(needle) => (true, needle),
        ReadyOn::Stderr(needle) => (false, needle),
    };
    let timeout = READY_TIMEOUT;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| BenchError(format!("cannot start {name} ({program}): {e}")))?;
    // Both streams are drained (a full pipe would stall the child); the one named by `on`
    // also reports the ready line.
    let streams: [(Option<Box<dyn Read + Send>>, bool); 2] = [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            ready_on_stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            !ready_on_stdout,
        ),
    ];
    let mut guard = ChildGuard { name, child };

    let (tx, rx) = mpsc::channel::<String>();
    for (stream, carries_ready_line) in streams {
        if let Some(stream) = stream {
            pump(name, stream, carries_ready_line.then(|| tx.clone()), needle);
        }
    }
    drop(tx);

    match rx.recv_timeout(timeout) {
        Ok(line) => Ok((guard, line)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(BenchError(format!(
            "{name} printed no line containing {needle:?} within {timeout:?}; its output is above"
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Both pipes closed: the process ended. Give it a moment to be reaped.
            thread::sleep(Duration::from_millis(100));
            let status = guard
                .child
                .try_wait()
                .ok()
                .flatten()
                .map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
            Err(BenchError(format!(
                "{name} exited ({status}) before it was ready; its output is above"
            )))
        }
    }
}

/// Output lines of a child copied to our stderr, per stream.
const MAX_SHOWN_LINES: usize = 40;

fn pump(
    name: &'static str,
    stream: impl Read + Send + 'static,
    mut ready: Option<mpsc::Sender<String>>,
    needle: &'static str,
) {
    thread::spawn(move || {
        let reader = BufReader::new(stream);
        let mut shown = 0;
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &ready
                && line.contains(needle)
            {
                let _ = tx.send(line);
                ready = None;
                continue;
            }
            // A chatty child (e.g. the proxy at RUST_LOG=info, one audit line per call) must
            // not turn the load generator into a log copier: show the first lines only.
            shown += 1;
            if shown <= MAX_SHOWN_LINES {
                eprintln!("[{name}] {line}");
            } else if shown == MAX_SHOWN_LINES + 1 {
                eprintln!("[{name}] ... (further output not shown)");
            }
        }
    });
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks: &u64| ticks > 0)
        .unwrap_or(100)
}

/// A process to observe: a child's pid, or ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Child(u32),
    SelfProcess,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Child(pid) => format!("/proc/{pid}"),
            Pid::SelfProcess => "/proc/self".to_owned(),
        }
    }

    /// User plus system CPU time, in clock ticks.
    pub fn cpu_ticks(self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("{}/stat", self.dir())).ok()?;
        // The command name (field 2) is in parentheses and may contain spaces: split after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); utime is field 14 and stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    /// A `kB` field of `/proc/<pid>/status`, e.g. `VmRSS` or `VmHWM`, in KiB.
    pub fn status_kib(self, key: &str) -> Option<u64> {
        self.status_field(key)
    }

    /// The `Threads` field of `/proc/<pid>/status`.
    pub fn threads(self) -> Option<u64> {
        self.status_field("Threads")
    }

    fn status_field(self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("{}/status", self.dir())).ok()?;
        status.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix(':')?;
            value.split_whitespace().next()?.parse().ok()
        })
    }

    /// Open file descriptors (the listener, connections from callers and to LiveKit, ...).
    pub fn open_fds(self) -> Option<u64> {
        let entries = std::fs::read_dir(Path::new(&self.dir()).join("fd")).ok()?;
        Some(entries.count() as u64)
    }
}
