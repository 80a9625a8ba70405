//! A Kafka-protocol broker to try the forwarder as a service without Kafka: the demo's embedded
//! cluster (librdkafka's mock broker) listening on loopback, with one topic of sample Insights
//! messages.
//!
//! ```text
//! cargo run --example embedded_kafka -- [topic [messages]]    # default: insights 1000
//! ```
//!
//! Prints the bootstrap address (`127.0.0.1:<port>`) as the first line of standard output, then
//! serves until it is killed. CI's install test (`.ci/install-test.sh`) runs the installed service
//! against it.

use std::io::Write;
use std::process::ExitCode;

use algorithmia_datadog::embedded::{EmbeddedKafka, SampleMessages};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let topic = args.first().map_or("insights", String::as_str);
    let count = match args.get(1).map(|n| n.parse::<u64>()) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("messages: {e}");
            return ExitCode::from(2);
        }
    };
    let kafka = match EmbeddedKafka::start(1) {
        Ok(kafka) => kafka,
        Err(e) => {
            eprintln!("cannot start the embedded Kafka: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut samples = SampleMessages::new(7);
    let loaded = kafka
        .create_topic(topic, 1)
        .and_then(|()| kafka.produce(topic, (0..count).map(|i| samples.message(i))));
    if let Err(e) = loaded {
        eprintln!("cannot load topic {topic}: {e}");
        return ExitCode::FAILURE;
    }
    println!("{}", kafka.bootstrap_servers());
    let _ = std::io::stdout().flush();
    eprintln!("serving {count} messages in topic {topic} until killed");
    loop {
        std::thread::park();
    }
}
