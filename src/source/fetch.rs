//! Fetched messages, taken many at a time.
//!
//! `poll` hands a subscribed consumer's messages over one at a time, each as an event of its own:
//! a queue lock, a clock read, an allocation and an event to destroy per message. In the broker
//! benchmark a bare consumer's polling thread spent as much CPU per message as its fetching
//! thread. Here the fetch queue of every assigned partition is forwarded to one queue of our own,
//! read with `rd_kafka_consume_batch_queue`, up to [`BATCH`] messages a call. The consumer's queue
//! is left with the group's events only (rebalances, commits, errors, statistics), still served
//! by `poll`.
//!
//! A partition's forwarding must be in place before librdkafka starts fetching it, or its first
//! messages go to the consumer's queue and could be handled after later ones:
//! [`FetchQueue::route`] is called by the rebalance callback before each assignment is applied.
//! librdkafka clears a partition's forwarding whenever it stops fetching it (a revocation; a
//! pause keeps it); it does not forward it anywhere else once the application forwarded it, so messages
//! fetched meanwhile wait in the partition's own queue. [`FetchQueue::route`] is called again
//! now and then for the whole assignment, which moves anything waiting there, in order, to our
//! queue. Messages of a partition that was revoked or paused after they were fetched are
//! discarded by librdkafka (their version is outdated), as `poll` does.
//!
//! A wait for messages also ends as soon as the consumer's queue has an event: librdkafka calls
//! back when it does, and the callback wakes the waiting thread ([`rd_kafka_queue_yield`]), so a
//! rebalance is served at once even while no message comes.
//!
//! The queue must be closed ([`FetchQueue::close`], or dropped) before the consumer is destroyed.

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_consume_batch_queue, rd_kafka_message_destroy, rd_kafka_message_t,
    rd_kafka_queue_cb_event_enable, rd_kafka_queue_destroy, rd_kafka_queue_forward,
    rd_kafka_queue_get_consumer, rd_kafka_queue_get_partition, rd_kafka_queue_length,
    rd_kafka_queue_new, rd_kafka_queue_t, rd_kafka_queue_yield, rd_kafka_t,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Most messages taken in one call. A batch is handled under one lock of the forwarder and one
/// clock read; 64 messages are about 20 KB of payloads, 20 µs of work.
pub const BATCH: usize = 64;

/// One message taken from the queue: valid until the next [`FetchQueue::take`].
pub struct Fetched<'a> {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its value (`None`: a tombstone).
    pub payload: Option<&'a [u8]>,
}

/// A librdkafka queue handle.
struct Queue(NonNull<rd_kafka_queue_t>);

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: the handle came from librdkafka and is destroyed once, here.
        unsafe { rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// The queue every assigned partition's messages are forwarded to. See the [module](self).
pub struct FetchQueue {
    client: NonNull<rd_kafka_t>,
    queue: Queue,
    /// The consumer's queue, whose events wake a wait on `queue`.
    consumer_queue: Queue,
    topic: CString,
    batch: Vec<*mut rd_kafka_message_t>,
}

// SAFETY: librdkafka's queue and client handles may be used from any thread; the raw message
// pointers in `batch` are only held during `take`, which needs `&mut self`.
unsafe impl Send for FetchQueue {}

/// Wakes the thread waiting on our queue: the consumer's queue has an event.
unsafe extern "C" fn wake(_client: *mut rd_kafka_t, queue: *mut std::ffi::c_void) {
    // SAFETY: `queue` is our queue's handle, which outlives this callback: it is disabled
    // (under the consumer queue's lock, which librdkafka holds while calling it) before the
    // handle is destroyed.
    unsafe { rd_kafka_queue_yield(queue.cast()) }
}

impl FetchQueue {
    /// A queue for the messages of `topic`, on the consumer `client` (its native handle, which
    /// must outlive the queue), or `None` if librdkafka has no consumer queue for it (no group).
    ///
    /// # Safety
    /// `client` must be a live consumer handle that outlives the returned queue.
    pub unsafe fn new(client: *mut rd_kafka_t, topic: &str) -> Option<FetchQueue> {
        let client = NonNull::new(client)?;
        let topic = CString::new(topic).ok()?;
        // SAFETY: `client` is a live handle (the caller's promise).
        let queue = Queue(NonNull::new(unsafe {
            rd_kafka_queue_new(client.as_ptr())
        })?);
        // SAFETY: as above.
        let consumer_queue = Queue(NonNull::new(unsafe {
            rd_kafka_queue_get_consumer(client.as_ptr())
        })?);
        // SAFETY: both handles are live; the callback is disabled in `drop` before `queue` goes.
        unsafe {
            rd_kafka_queue_cb_event_enable(
                consumer_queue.0.as_ptr(),
                Some(wake),
                queue.0.as_ptr().cast(),
            )
        };
        Some(FetchQueue {
            client,
            queue,
            consumer_queue,
            topic,
            batch: Vec::with_capacity(BATCH),
        })
    }

    /// Forwards the messages of `partitions` to this queue, from now on; anything fetched for
    /// them and still waiting in their own queues comes first, in order. Idempotent.
    pub fn route(&self, partitions: &[i32]) {
        for &partition in partitions {
            // SAFETY: the client outlives this queue; the topic is a valid C string.
            let own = unsafe {
                rd_kafka_queue_get_partition(self.client.as_ptr(), self.topic.as_ptr(), partition)
            };
            let Some(own) = NonNull::new(own).map(Queue) else {
                log::warn!("no queue for partition {partition}: its messages come through poll");
                continue;
            };
            // SAFETY: both handles are live.
            unsafe { rd_kafka_queue_forward(own.0.as_ptr(), self.queue.0.as_ptr()) };
        }
    }

    /// Whether the consumer's queue holds events for `poll`.
    pub fn events_waiting(&self) -> bool {
        // SAFETY: the handle is live.
        unsafe { rd_kafka_queue_length(self.consumer_queue.0.as_ptr()) > 0 }
    }

    /// Takes up to `max` (at most [`BATCH`]) messages, waiting up to `wait` for the first (less
    /// if the consumer's queue gets an event), and hands each to `each`, in order: a message, or
    /// the error librdkafka reported in its place. Returns how many it took.
    pub fn take(
        &mut self,
        wait: Duration,
        max: usize,
        mut each: impl FnMut(Result<Fetched<'_>, KafkaError>),
    ) -> usize {
        let max = max.clamp(1, BATCH);
        self.batch.clear();
        let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `batch` has room for `max` pointers, which librdkafka fills in.
        let taken = unsafe {
            let n = rd_kafka_consume_batch_queue(
                self.queue.0.as_ptr(),
                wait_ms,
                self.batch.as_mut_ptr(),
                max,
            );
            let n = usize::try_from(n).unwrap_or(0).min(max);
            self.batch.set_len(n);
            n
        };
        for &message in &self.batch {
            // SAFETY: librdkafka returned a valid message, destroyed below, after its use.
            let m = unsafe { &*message };
            let item = if m.err as i32 != 0 {
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                    m.err,
                )))
            } else {
                let payload = (!m.payload.is_null()).then(|| {
                    // SAFETY: librdkafka's payload pointer and length describe one allocation
                    // that lives as long as the message.
                    unsafe { std::slice::from_raw_parts(m.payload.cast::<u8>(), m.len) }
                });
                Ok(Fetched {
                    partition: m.partition,
                    offset: m.offset,
                    payload,
                })
            };
            each(item);
        }
        for message in self.batch.drain(..) {
            // SAFETY: each message is destroyed once, after its last use above.
            unsafe { rd_kafka_message_destroy(message) };
        }
        taken
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the consumer's queue handle is live; once this returns, librdkafka calls
        // `wake` no more (it swaps the callback under the queue's lock, which it holds while
        // calling it), so our queue can go.
        unsafe {
            rd_kafka_queue_cb_event_enable(
                self.consumer_queue.0.as_ptr(),
                None,
                std::ptr::null_mut(),
            )
        };
    }
}
