//! The forwarder binary as a process of its own, as users run it: started with a clean
//! environment, its output read line by line as it comes, stopped with signals, killed when a
//! test panics so that no forwarder outlives its test.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_algorithmia-datadog");

/// The binary with a clean environment: no DD_* or KAFKA_* leaking in from the machine.
pub fn forwarder(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// `run --config <config>` in `dir`, logging at `info`, its output read as it comes.
pub fn run_forwarder(dir: &Path, config: &Path) -> Watched {
    let mut cmd = forwarder(dir);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info");
    Watched::start(cmd)
}

pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(super::unique("algorithmia-datadog-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// Sends SIGTERM and returns how long the process took to exit, and its code.
pub fn terminate(child: &mut Child) -> (Duration, Option<i32>) {
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (sent.elapsed(), status.code());
        }
        if sent.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the forwarder did not exit within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines a child process writes, as they come.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The forwarder with its standard output and error read line by line as they come.
pub struct Watched {
    /// The process.
    pub child: Child,
    /// What it wrote on standard output, line by line.
    pub stdout: Lines,
    /// What it wrote on standard error, line by line.
    pub stderr: Lines,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn read_lines(
    pipe: impl std::io::Read + Send + 'static,
    into: &Lines,
) -> std::thread::JoinHandle<()> {
    let into = into.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    })
}

impl Watched {
    /// Starts `cmd` with its output piped and read.
    pub fn start(mut cmd: Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Lines::default(), Lines::default());
        let readers = vec![
            read_lines(child.stdout.take().unwrap(), &stdout),
            read_lines(child.stderr.take().unwrap(), &stderr),
        ];
        Watched {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// The standard error lines so far (the log).
    pub fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to 20 s for a line of `output` (the process's stdout or stderr) containing
    /// `text`, then stops the process: whether the line came, and what [`Watched::stop`] gives.
    #[allow(clippy::type_complexity)]
    pub fn stop_after_line(
        self,
        output: fn(&Watched) -> &Lines,
        text: &str,
    ) -> (bool, Option<i32>, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let seen = || {
            output(&self)
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(text))
        };
        while !seen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let found = seen();
        let (code, stdout, stderr) = self.stop();
        (found, code, stdout, stderr)
    }

    /// SIGTERM, then everything the process wrote: its exit code, stdout and stderr.
    pub fn stop(self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let (_, code, stdout, stderr) = self.stop_timed();
        (code, stdout, stderr)
    }

    /// Like [`Watched::stop`], also giving how long the process took to exit after SIGTERM.
    pub fn stop_timed(mut self) -> (Duration, Option<i32>, Vec<String>, Vec<String>) {
        let (took, code) = terminate(&mut self.child);
        let (stdout, stderr) = self.collect();
        (took, code, stdout, stderr)
    }

    /// SIGKILL, as a crash would: everything it wrote.
    pub fn kill(mut self) -> (Vec<String>, Vec<String>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.collect()
    }

    fn collect(&mut self) -> (Vec<String>, Vec<String>) {
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        let take = |lines: &Lines| std::mem::take(&mut *lines.lock().unwrap());
        (take(&self.stdout), take(&self.stderr))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for a log line (standard error) containing `text`; whether it came.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.lines().iter().any(|l| l.contains(text)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// CPU time (user + system) the process used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(self.pid())
    }
}

impl Drop for Watched {
    /// A test that panics must not leave a forwarder running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time (user + system) process `pid` used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name (field 2) may hold spaces: the fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// A `/proc/PID/status` field in KiB (`VmHWM:`, `VmRSS:`) of process `pid`, or of this process;
/// 0 if unreadable.
pub fn status_kib(pid: Option<u32>, field: &str) -> u64 {
    let process = pid.map_or("self".to_string(), |p| p.to_string());
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
