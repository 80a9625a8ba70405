//! The forwarder's delivery rules: an offset moves on only once the socket took every line that
//! carried its message's points.

use super::*;
use cadence::SpyMetricSink;

fn forwarder(spy: SpyMetricSink, interval_secs: u64) -> (Forwarder, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let sink = DogStatsdSink::builder(spy, 1432)
        .counters(counters.clone())
        .build();
    let mapper = MetricMapper::builder("algorithmia").build();
    let forwarder = Forwarder::builder(mapper, sink, counters.clone())
        .aggregation_interval(Duration::from_secs(interval_secs))
        .topic("t")
        .build();
    (forwarder, counters)
}

fn stored(f: &mut Forwarder) -> Vec<(i32, i64)> {
    f.offsets
        .take_unstored("t")
        .map(|tpl| {
            tpl.elements()
                .iter()
                .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
                .collect()
        })
        .unwrap_or_default()
}

fn received(datagrams: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    datagrams
        .flat_map(|d| {
            String::from_utf8(d)
                .unwrap()
                .split('\n')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn offsets_of_rejected_messages_move_on_at_once() {
    for interval in [0, 2] {
        let (_rx, spy) = SpyMetricSink::new();
        let (mut f, _) = forwarder(spy, interval);
        f.handle(0, 7, Some(b"not json"));
        f.handle(0, 8, Some(b"[1]"));
        assert_eq!(stored(&mut f), [(0, 9)], "interval {interval}");
    }
}

#[test]
fn sending_every_point_offsets_wait_for_the_buffer() {
    let (rx, spy) = SpyMetricSink::new();
    let (mut f, _) = forwarder(spy, 0);
    f.handle(0, 7, Some(br#"{"x":1}"#));
    f.handle(0, 8, Some(b"not json")); // behind a buffered point: waits too
    assert_eq!(stored(&mut f), []);
    assert!(f.flush());
    assert_eq!(
        received(rx.try_iter()),
        ["algorithmia.x:1|g", "algorithmia.calls:1|c"]
    );
    assert_eq!(stored(&mut f), [(0, 9)]);
}

#[test]
fn offsets_do_not_move_before_the_window_is_written() {
    let (rx, spy) = SpyMetricSink::new();
    let (mut f, counters) = forwarder(spy, 10);
    for offset in 0..100 {
        f.handle(
            offset as i32 % 2,
            offset,
            Some(br#"{"x":1,"algorithm_name":"m"}"#),
        );
    }
    f.handle(0, 100, Some(b"not json")); // behind the window on its partition
    assert_eq!(stored(&mut f), []);
    assert!(
        rx.try_recv().is_err(),
        "nothing is sent before the window ends"
    );
    assert!(f.next_deadline().is_some(), "the window has an end");
    assert!(f.flush());
    assert_eq!(
        received(rx.try_iter()),
        [
            "algorithmia.x:1|g|#algorithm_name:m",
            "algorithmia.calls:100|c|#algorithm_name:m"
        ]
    );
    assert_eq!(stored(&mut f), [(0, 101), (1, 100)]);
    let s = counters.snapshot();
    assert_eq!((s.gauges, s.counts, s.points_aggregated), (1, 1, 198));
    assert_eq!(f.next_deadline(), None, "nothing waits");
}

#[test]
fn the_window_is_written_when_its_interval_ends() {
    let (rx, spy) = SpyMetricSink::new();
    let (mut f, _) = forwarder(spy, 1);
    let before = Instant::now();
    f.handle(0, 0, Some(br#"{"x":1}"#));
    let deadline = f.next_deadline().unwrap();
    assert!(deadline > before && deadline <= before + Duration::from_secs(1));
    f.flush_if_due(deadline - Duration::from_millis(1));
    assert!(rx.try_recv().is_err(), "not yet");
    f.flush_if_due(deadline);
    assert_eq!(
        received(rx.try_iter()),
        ["algorithmia.x:1|g", "algorithmia.calls:1|c"]
    );
    assert_eq!(stored(&mut f), [(0, 1)]);
}

#[test]
fn a_full_window_is_written_early_and_nothing_is_dropped() {
    let (rx, spy) = SpyMetricSink::new();
    let counters = Arc::new(Counters::default());
    let sink = DogStatsdSink::builder(spy, 1432)
        .counters(counters.clone())
        .build();
    let mut f = Forwarder::builder(MetricMapper::builder("a").build(), sink, counters.clone())
        .aggregation_interval(Duration::from_secs(10))
        .max_contexts(4)
        .build();
    // Each message: one gauge and one call count, under its own tags: 2 contexts.
    for i in 0..5 {
        let json = format!(r#"{{"x":{i},"algorithm_name":"m{i}"}}"#);
        f.handle(0, i, Some(json.as_bytes()));
    }
    // Closed after the second and the fourth message; the fifth waits in the window.
    assert_eq!(f.open_contexts(), 2);
    assert_eq!(stored(&mut f), [(0, 4)]);
    assert!(f.flush());
    let lines = received(rx.try_iter());
    assert_eq!(lines.len(), 10);
    for i in 0..5 {
        assert!(lines.contains(&format!("a.x:{i}|g|#algorithm_name:m{i}")));
        assert!(lines.contains(&format!("a.calls:1|c|#algorithm_name:m{i}")));
    }
}

/// Refuses every write while `refuse` is set.
#[derive(Clone, Default)]
struct Switch {
    refuse: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<std::sync::Mutex<Vec<String>>>,
}

impl cadence::MetricSink for Switch {
    fn emit(&self, metric: &str) -> std::io::Result<usize> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "agent down",
            ));
        }
        self.sent.lock().unwrap().push(metric.to_string());
        Ok(metric.len())
    }
}

#[test]
fn a_refused_window_holds_its_offsets_and_the_next_windows_until_the_agent_is_back() {
    let switch = Switch::default();
    let counters = Arc::new(Counters::default());
    let sink = DogStatsdSink::builder(switch.clone(), 1432)
        .counters(counters.clone())
        .build();
    let mut f = Forwarder::builder(MetricMapper::builder("a").build(), sink, counters)
        .aggregation_interval(Duration::from_secs(2))
        .build();
    f.handle(0, 0, Some(br#"{"seq":0}"#));
    switch.refuse.store(true, Ordering::SeqCst);
    assert!(!f.flush(), "the Agent refuses");
    assert!(f.is_blocked());
    assert_eq!(
        f.next_deadline(),
        None,
        "the caller retries on its own schedule"
    );
    f.handle(0, 1, Some(br#"{"seq":1}"#)); // a message fetched before the pause
    f.flush_if_due(Instant::now() + Duration::from_secs(5));
    assert_eq!(stored(&mut f), [], "nothing moves while blocked");
    switch.refuse.store(false, Ordering::SeqCst);
    assert!(f.flush());
    assert_eq!(stored(&mut f), [(0, 2)]);
    let sent = switch.sent.lock().unwrap().join("\n");
    assert_eq!(sent, "a.seq:0|g\na.calls:1|c\na.seq:1|g\na.calls:1|c");
}

#[test]
fn unpacked_distributions_go_one_value_per_line_and_all_of_them() {
    for packed in [true, false] {
        let (rx, spy) = SpyMetricSink::new();
        let counters = Arc::new(Counters::default());
        let sink = DogStatsdSink::builder(spy, 1432)
            .counters(counters.clone())
            .build();
        let mapper = MetricMapper::builder("algorithmia")
            .distributions(["x"])
            .build();
        let mut f = Forwarder::builder(mapper, sink, counters.clone())
            .aggregation_interval(Duration::from_secs(10))
            .packed_distributions(packed)
            .topic("t")
            .build();
        for (offset, x) in [(0, "1"), (1, "2"), (2, "3")] {
            f.handle(0, offset, Some(format!(r#"{{"x":{x}}}"#).as_bytes()));
        }
        f.close_window();
        let lines: Vec<String> = received(rx.try_iter())
            .into_iter()
            .filter(|l| l.contains("|d"))
            .collect();
        let expected: &[&str] = if packed {
            &["algorithmia.x:1:2:3|d"]
        } else {
            &[
                "algorithmia.x:1|d",
                "algorithmia.x:2|d",
                "algorithmia.x:3|d",
            ]
        };
        assert_eq!(lines, expected, "packed: {packed}");
        assert_eq!(counters.snapshot().distribution_values, 3);
    }
}
