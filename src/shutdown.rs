//! Stopping: SIGTERM and SIGINT raise a flag the pipeline checks; a second signal, or a shutdown
//! that overruns its budget, ends the process at once.
//!
//! ```no_run
//! use std::time::Duration;
//! use algorithmia_datadog::Shutdown;
//!
//! let shutdown = Shutdown::install(Duration::from_millis(9500), "flushing and closing").unwrap();
//! // ... hand shutdown.flag() to the pipeline ...
//! # let _ = shutdown;
//! ```

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The stop flag, wired to the signals.
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// Registers SIGTERM and SIGINT, and a watchdog that exits the process with code 0 once
    /// `hard_deadline` has passed since the first signal: the daemon promises to stop within
    /// 10 seconds even if librdkafka hangs.
    /// `stopping` says, in the one log line a signal brings, what stopping does (a dry run
    /// commits nothing, so it must not say it commits).
    pub fn install(hard_deadline: Duration, stopping: &'static str) -> io::Result<Shutdown> {
        let flag = Arc::new(AtomicBool::new(false));
        // Set by signals only: a stop raised by a failing instance must not be turned into an
        // exit code 0 by the watchdog.
        let signalled = Arc::new(AtomicBool::new(false));
        for signal in [SIGTERM, SIGINT] {
            // A second signal while stopping exits immediately with code 1.
            signal_hook::flag::register_conditional_shutdown(signal, 1, signalled.clone())?;
            signal_hook::flag::register(signal, flag.clone())?;
            signal_hook::flag::register(signal, signalled.clone())?;
        }
        let watched = signalled;
        std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                while !watched.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                log::info!("stopping: {stopping}");
                let started = Instant::now();
                std::thread::sleep(hard_deadline);
                log::error!(
                    "shutdown still not finished after {:?}; exiting without waiting further",
                    started.elapsed()
                );
                std::process::exit(0);
            })?;
        Ok(Shutdown { flag })
    }

    /// The flag the pipeline polls.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}
