//! What the forwarder counts and reports about itself: [`counters`] (messages, points,
//! rejections and skips by reason), [`health`] (what the service checks describe) and the
//! [`reporter`] that sends both to the Agent.
//!
//! Counters are atomics so that the consuming thread can bump them without a lock while the
//! command line (the demo summary, the benchmark) or a reporter reads them.
//!
//! ```
//! use algorithmia_datadog::{Counters, SkipReason};
//!
//! let counters = Counters::default();
//! counters.skip(SkipReason::Null);
//! assert_eq!(counters.snapshot().skipped(SkipReason::Null), 1);
//! ```

mod counters;
mod health;
mod reporter;

pub use counters::*;
pub use health::*;
pub use reporter::*;
