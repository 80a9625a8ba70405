//! Static membership (`group.instance.id`) on tansu: a forwarder SIGKILLed and restarted under
//! the same instance id (a container restarted in its pod keeps the pod's name) takes its
//! partitions back without waiting out the dead member's session, as a new member must.
//!
//! Prints one `STATIC` line per run; `cargo test --test static_membership -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::agent::*;
use common::process::*;
use common::tansu::*;
use common::*;

/// What a SIGKILL and an immediate restart cost: seconds from the restart to the first
/// forwarded message, to messages produced after the restart, and the duplicates.
struct Restart {
    first: f64,
    flowing: f64,
    produced: u64,
    duplicates: u64,
}

fn sigkill_and_restart(extra: &str) -> Restart {
    let rate = 1_000;
    let broker = Tansu::start();
    let topic = unique("insights");
    broker.create_topic(&topic, 4);
    let agent = Agent::udp();
    let dir = scratch_dir();
    let config = write(
        &dir,
        "algorithmia.yaml",
        &format!(
            "init_config:\n  dogstatsd_url: {}\ninstances:\n  - kafka_broker: \"{}\"\n    kafka_topic: {topic}\n    consumer_group: {}\n    start_offset: earliest\n    distribution_metrics: [seq]\n    aggregation_interval: 1\n{extra}",
            agent.url,
            broker.bootstrap(),
            unique("group")
        ),
    );
    let traffic = Traffic::start(&broker.bootstrap(), &topic, rate, &[]);
    let first = run_forwarder(&dir, &config);
    assert!(
        agent.wait_until(Duration::from_secs(60), |a| a.seqs().len() >= 3_000),
        "forwarded {} of 3000; log:\n{}",
        agent.seqs().len(),
        first.lines().join("\n")
    );
    first.kill();
    let newest = agent.seqs().into_iter().max().unwrap_or(0);
    let second = run_forwarder(&dir, &config);
    let restarted = Instant::now();
    // Messages produced a second after the restart.
    let produced_later = newest + rate;
    assert!(
        agent.wait_until(Duration::from_secs(60), |a| a
            .seqs()
            .iter()
            .any(|s| *s > produced_later)),
        "nothing new forwarded after the restart; log:\n{}",
        second.lines().join("\n")
    );
    let arrivals = agent.seq_arrivals();
    let since = |keep: &dyn Fn(u64) -> bool| {
        arrivals
            .iter()
            .filter(|(at, seq)| *at > restarted && keep(*seq))
            .map(|(at, _)| at.duration_since(restarted).as_secs_f64())
            .fold(f64::INFINITY, f64::min)
    };
    let first_message = since(&|_| true);
    let flowing = since(&|seq| seq > produced_later);
    std::thread::sleep(Duration::from_secs(2));
    let produced = traffic.stop();
    agent.wait_for_all(produced, Duration::from_secs(120));
    let duplicates = tally("static membership", produced, &agent.seqs());
    let (code, _, log) = second.stop();
    assert_eq!(code, Some(0), "{log:#?}");
    Restart {
        first: first_message,
        flowing,
        produced,
        duplicates,
    }
}

#[test]
fn a_restarted_static_member_resumes_without_waiting_out_its_old_session() {
    // Both at once, each with a broker of its own: half the wall time.
    let dynamic = std::thread::spawn(|| sigkill_and_restart(""));
    let id = unique("forwarder-0");
    let fixed = sigkill_and_restart(&format!(
        "    kafka_options: {{group.instance.id: \"{id}\"}}\n"
    ));
    let dynamic = dynamic.join().expect("the dynamic member's run");
    for (name, r) in [("dynamic member", &dynamic), ("static member", &fixed)] {
        eprintln!(
            "STATIC {name}: SIGKILL and restart at 1000/s on 4 partitions: first message \
             {:.1} s after the restart, new messages {:.1} s after it, produced {}, forwarded \
             {}, duplicates {}",
            r.first, r.flowing, r.produced, r.produced, r.duplicates
        );
    }
    assert!(
        fixed.first + 5.0 < dynamic.first,
        "static membership did not shorten the restart: {:.1} s against {:.1} s",
        fixed.first,
        dynamic.first
    );
}
