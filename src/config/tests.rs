//! Every configuration rule, and every way a configuration is rejected.

use super::raw::Part;
use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| map.get(name).cloned()
}

fn load(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, "algorithmia.yaml", &env_of(&[]))
}

fn load_with(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, "algorithmia.yaml", &env_of(env))
}

fn rejected(yaml: &str) -> ConfigError {
    load(yaml).expect_err("this configuration must be rejected")
}

const MINIMAL: &str = "instances:\n  - kafka_broker: k1:9092\n    kafka_topic: insights\n";

#[test]
fn a_minimal_file_gets_every_documented_default() {
    let config = load(MINIMAL).unwrap();
    assert_eq!(config.dogstatsd, Destination::Udp("127.0.0.1:8125".into()));
    assert_eq!(config.metric_prefix, "algorithmia");
    let i = &config.instances[0];
    assert_eq!(i.brokers, ["k1:9092"]);
    assert_eq!(i.topic, "insights");
    assert_eq!(i.consumer_group, "algorithmia-datadog");
    assert_eq!(i.start_offset, StartOffset::Latest);
    assert_eq!(i.security_protocol, SecurityProtocol::Plaintext);
    assert_eq!(i.sasl, None);
    assert_eq!(
        i.tag_fields,
        ["algorithm_name", "algorithm_version", "algorithm_owner"]
    );
    assert_eq!(
        i.operational_fields,
        [
            "algorithm_name",
            "algorithm_version",
            "algorithm_owner",
            "request_id",
            "session_id",
            "time"
        ]
    );
    assert!(i.numeric_strings && i.booleans && !i.send_timestamps);
    assert!(i.include_metrics.is_empty() && i.exclude_metrics.is_empty() && i.tags.is_empty());
    assert_eq!(i.timestamp_field, "time");
    assert!(i.distribution_metrics.is_empty());
    assert_eq!((i.aggregation_interval, i.max_contexts), (2, 100_000));
    assert_eq!(i.commit_interval_ms, 1_000);
}

#[test]
fn the_commit_interval_is_read_and_bounded() {
    let config = load(&format!("{MINIMAL}    commit_interval_ms: 250\n")).unwrap();
    assert_eq!(config.instances[0].commit_interval_ms, 250);
    for bad in ["0", "99", "60001", "-5", "1.5", "soon"] {
        let e = rejected(&format!("{MINIMAL}    commit_interval_ms: {bad}\n"));
        assert_eq!(e.key, "instances[0].commit_interval_ms", "{bad}: {e}");
    }
    let e = rejected(&format!("{MINIMAL}    commit_interval_ms: 0\n"));
    assert!(e.reason.contains("between 100 and 60000"), "{e}");
}

#[test]
fn aggregation_settings_are_read_and_checked() {
    let config = load(&format!(
        "{MINIMAL}    aggregation_interval: 0\n    max_contexts: 500\n    distribution_metrics: [duration_*, risk_score]\n"
    ))
    .unwrap();
    let i = &config.instances[0];
    assert_eq!((i.aggregation_interval, i.max_contexts), (0, 500));
    assert_eq!(i.distribution_metrics, ["duration_*", "risk_score"]);
    for interval in [1, 5, 10] {
        let yaml = format!("{MINIMAL}    aggregation_interval: {interval}\n");
        assert_eq!(
            load(&yaml).unwrap().instances[0].aggregation_interval,
            interval
        );
    }
    for bad in ["3", "60", "-1", "1.5", "two"] {
        let e = rejected(&format!("{MINIMAL}    aggregation_interval: {bad}\n"));
        assert_eq!(e.key, "instances[0].aggregation_interval", "{bad}: {e}");
    }
    let e = rejected(&format!("{MINIMAL}    aggregation_interval: 3\n"));
    assert!(e.reason.contains("0, 1, 2, 5 or 10"), "{e}");
    let e = rejected(&format!("{MINIMAL}    max_contexts: 0\n"));
    assert_eq!(e.key, "instances[0].max_contexts");
    let e = rejected(&format!("{MINIMAL}    distribution_metrics: [\"\"]\n"));
    assert_eq!(e.key, "instances[0].distribution_metrics[0]");
}

#[test]
fn check_config_shows_the_aggregation_settings() {
    let yaml = load(&format!(
        "{MINIMAL}    distribution_metrics: [risk_score]\n"
    ))
    .unwrap()
    .redacted_yaml();
    for expected in [
        "aggregation_interval: 2",
        "max_contexts: 100000",
        "commit_interval_ms: 1000",
        "- risk_score",
    ] {
        assert!(yaml.contains(expected), "{expected} missing from:\n{yaml}");
    }
}

#[test]
fn the_shipped_example_file_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf.d/algorithmia.yaml"
    ))
    .unwrap();
    let config = Config::from_yaml(&text, "conf.d/algorithmia.yaml", &env_of(&[])).unwrap();
    assert_eq!(config.instances.len(), 1);
}

#[test]
fn brokers_may_be_a_comma_separated_string_or_a_list() {
    let joined =
        load("instances:\n  - kafka_broker: \"h1:9092, h2:9092\"\n    kafka_topic: t\n").unwrap();
    let listed =
        load("instances:\n  - kafka_broker: [h1:9092, h2:9092]\n    kafka_topic: t\n").unwrap();
    assert_eq!(joined.instances[0].brokers, ["h1:9092", "h2:9092"]);
    assert_eq!(listed.instances[0].brokers, joined.instances[0].brokers);
}

#[test]
fn each_instance_is_its_own_consumer() {
    let config = load(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t1\n  - kafka_broker: b:2\n    kafka_topic: t2\n    consumer_group: g2\n",
    )
    .unwrap();
    assert_eq!(config.instances.len(), 2);
    assert_eq!(config.instances[1].index, 1);
    assert_eq!(config.instances[1].consumer_group, "g2");
}

#[test]
fn missing_broker_or_topic_is_rejected_naming_the_key() {
    let e = rejected("instances:\n  - kafka_topic: t\n");
    assert_eq!(e.key, "instances[0]");
    assert!(e.reason.contains("kafka_broker"), "{e}");
    let e = rejected("instances:\n  - kafka_broker: a:1\n");
    assert!(e.reason.contains("kafka_topic"), "{e}");
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: \"\"\n");
    assert_eq!(e.key, "instances[0].kafka_topic");
}

#[test]
fn a_malformed_broker_is_rejected() {
    for brokers in ["\"\"", "\"a:1,,b:2\"", "localhost", "\"a:notaport\"", "[]"] {
        let e = rejected(&format!(
            "instances:\n  - kafka_broker: {brokers}\n    kafka_topic: t\n"
        ));
        assert_eq!(e.key, "instances[0].kafka_broker", "{brokers}: {e}");
    }
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    kafka_topik: x\n");
    assert_eq!(e.key, "instances[0].kafka_topik");
    assert!(e.reason.contains("unknown field `kafka_topik`"), "{e}");
    let e = rejected(
        "init_config:\n  dogstatsd: x\ninstances:\n  - kafka_broker: a:1\n    kafka_topic: t\n",
    );
    assert_eq!(e.key, "init_config.dogstatsd");
    assert!(e.reason.contains("unknown field `dogstatsd`"), "{e}");
    let e = rejected("extra: 1\ninstances: []\n");
    assert!(e.reason.contains("unknown field `extra`"), "{e}");
}

#[test]
fn wrong_types_are_rejected_naming_the_key() {
    let e =
        rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    booleans: maybe\n");
    assert_eq!(e.key, "instances[0].booleans");
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tags: team:ml\n");
    assert_eq!(e.key, "instances[0].tags");
    let e = rejected(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    start_offset: middle\n",
    );
    assert_eq!(e.key, "instances[0].start_offset");
    assert!(
        e.reason.contains("latest") && e.reason.contains("earliest"),
        "{e}"
    );
    let e = rejected(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: TLS\n",
    );
    assert_eq!(e.key, "instances[0].security_protocol");
    let e = rejected("instances: {}\n");
    assert_eq!(e.key, "instances");
}

#[test]
fn an_empty_file_or_no_instance_is_rejected() {
    assert_eq!(rejected("").key, "instances");
    assert_eq!(rejected("instances: []\n").key, "instances");
    assert!(rejected("init_config:\n").reason.contains("instances"));
}

#[test]
fn invalid_yaml_is_rejected_with_its_position() {
    let e = rejected("instances:\n  - kafka_broker: [a:1\n");
    assert_eq!(e.key, "(syntax)");
    assert!(e.reason.contains("line"), "{e}");
}

#[test]
fn errors_name_the_file() {
    let e = rejected("instances: []\n");
    assert_eq!(
        e.to_string(),
        "algorithmia.yaml: instances: at least one instance is required"
    );
}

#[test]
fn environment_variables_are_expanded_in_every_string() {
    let yaml = "instances:\n  - kafka_broker: ${BROKER}\n    kafka_topic: pre-${TOPIC}-post\n    security_protocol: SASL_SSL\n    sasl_mechanism: SCRAM-SHA-512\n    sasl_username: u\n    sasl_password: ${KAFKA_PASSWORD}\n    tags: [\"cost$$center:1\"]\n";
    let config = load_with(
        yaml,
        &[
            ("BROKER", "b:9093"),
            ("TOPIC", "ins"),
            ("KAFKA_PASSWORD", "p: #not yaml"),
        ],
    )
    .unwrap();
    let i = &config.instances[0];
    assert_eq!(i.brokers, ["b:9093"]);
    assert_eq!(i.topic, "pre-ins-post");
    assert_eq!(i.sasl.as_ref().unwrap().password.expose(), "p: #not yaml");
    assert_eq!(i.tags, ["cost$center:1"]);
}

#[test]
fn an_unset_variable_is_rejected_naming_the_key_and_the_variable() {
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: ${NOPE}\n");
    assert_eq!(e.key, "instances[0].kafka_topic");
    assert!(e.reason.contains("NOPE"), "{e}");
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: ${unterminated\n");
    assert!(e.reason.contains("closing"), "{e}");
}

#[test]
fn a_secret_that_cannot_be_expanded_is_not_quoted() {
    // Found by the config fuzz target: the error quoted `${...}` from inside a password.
    let sasl = "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: u\n";
    for (setting, key) in [
        (
            "sasl_password: \"hunter${2-xyzzy}\"",
            "instances[0].sasl_password",
        ),
        (
            "sasl_password: \"hunter${twoxyzzy}\"",
            "instances[0].sasl_password",
        ),
        (
            "kafka_options: {ssl.key.password: \"p${xyzzy}\"}",
            "instances[0].kafka_options.ssl.key.password",
        ),
    ] {
        let e = rejected(&format!("{sasl}    {setting}\n"));
        assert_eq!(e.key, key);
        assert!(!e.to_string().contains("xyzzy"), "{e}");
        assert!(e.reason.contains("not shown"), "{e}");
    }
    // A password given as nothing but a reference names its variable: that is no secret.
    let e = rejected(&format!("{sasl}    sasl_password: ${{KAFKA_PASSWORD}}\n"));
    assert_eq!(e.reason, "environment variable KAFKA_PASSWORD is not set");
}

#[test]
fn a_bad_reference_outside_any_key_still_names_a_place() {
    // Found by the config fuzz target: the document `${` gave the error "file: : reason".
    let e = rejected("${");
    assert_eq!(e.key, "(top level)");
    assert!(e.reason.contains("closing"), "{e}");
    let e = rejected("\"\": ${NOPE}\n");
    assert_eq!(e.key, "\"\"");
    // Nor when a key that is no string is unknown (the config fuzz target again: `? !!t`).
    let e = rejected("? !!t\n");
    assert_eq!(e.key, "(top level)");
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn sasl_requires_a_mechanism_and_credentials() {
    let base =
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SASL_SSL\n";
    let e = rejected(&format!(
        "{base}    sasl_username: u\n    sasl_password: p\n"
    ));
    assert_eq!(e.key, "instances[0].sasl_mechanism");
    let e = rejected(&format!(
        "{base}    sasl_mechanism: PLAIN\n    sasl_password: p\n"
    ));
    assert_eq!(e.key, "instances[0].sasl_username");
    let e = rejected(&format!(
        "{base}    sasl_mechanism: PLAIN\n    sasl_username: u\n"
    ));
    assert_eq!(e.key, "instances[0].sasl_password");
    let e = rejected(&format!(
        "{base}    sasl_mechanism: GSSAPI\n    sasl_username: u\n    sasl_password: p\n"
    ));
    assert_eq!(e.key, "instances[0].sasl_mechanism");
    let ok = load(&format!(
        "{base}    sasl_mechanism: SCRAM-SHA-256\n    sasl_username: u\n    sasl_password: p\n"
    ))
    .unwrap();
    assert_eq!(
        ok.instances[0].sasl.as_ref().unwrap().mechanism,
        SaslMechanism::ScramSha256
    );
}

#[test]
fn sasl_settings_without_a_sasl_protocol_are_rejected() {
    let e =
        rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    sasl_username: u\n");
    assert_eq!(e.key, "instances[0].sasl_username");
    assert!(e.reason.contains("SASL_SSL"), "{e}");
}

#[test]
fn a_missing_ca_file_is_rejected() {
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SSL\n    ssl_ca_location: /nonexistent/ca.pem\n");
    assert_eq!(e.key, "instances[0].ssl_ca_location");
}

#[test]
fn the_destination_follows_the_documented_precedence() {
    let file = "init_config:\n  dogstatsd_url: unix:///var/run/datadog/dsd.socket\n";
    let all = [
        ("DD_DOGSTATSD_URL", "udp://10.0.0.1:9125"),
        ("DD_AGENT_HOST", "agent"),
        ("DD_DOGSTATSD_PORT", "8200"),
    ];
    let c = load_with(&format!("{file}{MINIMAL}"), &all).unwrap();
    assert_eq!(
        c.dogstatsd,
        Destination::Unix("/var/run/datadog/dsd.socket".into())
    );
    let c = load_with(MINIMAL, &all).unwrap();
    assert_eq!(c.dogstatsd, Destination::Udp("10.0.0.1:9125".into()));
    let c = load_with(MINIMAL, &all[1..]).unwrap();
    assert_eq!(c.dogstatsd, Destination::Udp("agent:8200".into()));
    let c = load_with(MINIMAL, &all[1..2]).unwrap();
    assert_eq!(c.dogstatsd, Destination::Udp("agent:8125".into()));
    let c = load_with(MINIMAL, &[]).unwrap();
    assert_eq!(c.dogstatsd, Destination::Udp("127.0.0.1:8125".into()));
}

#[test]
fn a_bad_destination_is_rejected_naming_where_it_came_from() {
    let e = rejected(&format!(
        "init_config:\n  dogstatsd_url: tcp://x:1\n{MINIMAL}"
    ));
    assert_eq!(e.key, "init_config.dogstatsd_url");
    let e = load_with(MINIMAL, &[("DD_DOGSTATSD_URL", "udp://nohost")]).unwrap_err();
    assert_eq!(e.key, "DD_DOGSTATSD_URL");
    let e = load_with(
        MINIMAL,
        &[("DD_AGENT_HOST", "a"), ("DD_DOGSTATSD_PORT", "x")],
    )
    .unwrap_err();
    assert_eq!(e.key, "DD_DOGSTATSD_PORT");
    assert!(Destination::parse("unix://relative/path").is_err());
    assert!(Destination::parse("udp://:8125").is_err());
}

#[test]
fn datagram_limits_follow_the_transport() {
    assert_eq!(
        Destination::parse("udp://a:1")
            .unwrap()
            .max_datagram_bytes(false),
        1432
    );
    assert_eq!(
        Destination::parse("unix:///s")
            .unwrap()
            .max_datagram_bytes(false),
        8192
    );
}

#[test]
fn an_unpaced_loopback_udp_destination_takes_8192_byte_datagrams() {
    for url in [
        "udp://127.0.0.1:8125",
        "udp://127.1.2.3:8125",
        "udp://localhost:8125",
        "udp://[::1]:8125",
    ] {
        assert_eq!(
            Destination::parse(url).unwrap().max_datagram_bytes(false),
            8192,
            "{url}"
        );
    }
    for url in [
        "udp://10.0.0.7:8125",
        "udp://datadog-agent:8125",
        "udp://[fe80::1]:8125",
        "udp://128.0.0.1:8125",
    ] {
        assert_eq!(
            Destination::parse(url).unwrap().max_datagram_bytes(false),
            1432,
            "{url}"
        );
    }
    // A paced destination keeps the datagrams its pace was measured with.
    assert_eq!(
        Destination::parse("udp://127.0.0.1:8125")
            .unwrap()
            .max_datagram_bytes(true),
        1432
    );
}

#[test]
fn static_tags_are_ordered_instance_then_init_config_then_dd_variables() {
    let yaml = "init_config:\n  tags: [\"team:ml\"]\ninstances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tags: [\"cluster:eu\"]\n";
    let c = load_with(
        yaml,
        &[
            ("DD_ENV", "prod"),
            ("DD_SERVICE", "fraud"),
            ("DD_VERSION", "1.2"),
        ],
    )
    .unwrap();
    assert_eq!(
        c.instances[0].tags,
        [
            "cluster:eu",
            "team:ml",
            "env:prod",
            "service:fraud",
            "version:1.2"
        ]
    );
}

#[test]
fn tags_that_could_break_a_datagram_are_rejected() {
    for tag in ["\"a,b\"", "\"a|b\"", "\"a#b\"", "\"\"", "\"key:\""] {
        let e = rejected(&format!(
            "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tags: [{tag}]\n"
        ));
        assert_eq!(e.key, "instances[0].tags[0]", "{tag}");
    }
    let e = load_with(MINIMAL, &[("DD_ENV", "a,b")]).unwrap_err();
    assert_eq!(e.key, "DD_ENV");
}

#[test]
fn tags_that_could_make_a_line_longer_than_a_datagram_are_rejected() {
    // Found by the config fuzz target: five tag fields and a 200-character tag made 1452-byte
    // lines for 1432-byte UDP datagrams.
    let seven = "tag_fields: [algorithm_name, algorithm_version, algorithm_owner, a, b, c, d]";
    let yaml = |url: &str| {
        format!(
            "init_config:\n  dogstatsd_url: {url}\ninstances:\n  - kafka_broker: a:1\n    \
             kafka_topic: t\n    {seven}\n"
        )
    };
    let e = rejected(&yaml("udp://127.0.0.1:8125"));
    assert_eq!(e.key, "instances[0].tag_fields");
    assert!(
        e.reason
            .contains("1432-byte datagrams of udp://127.0.0.1:8125"),
        "{e}"
    );
    assert!(e.reason.contains("unix://"), "{e}");
    load(&yaml("unix:///var/run/datadog/dsd.socket")).expect("8192-byte datagrams fit them");

    let long_tags: Vec<String> = (0..7)
        .map(|i| format!("\"t{i}:{}\"", "x".repeat(190)))
        .collect();
    let e = rejected(&format!(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tags: [{}]\n",
        long_tags.join(", ")
    ));
    assert_eq!(e.key, "instances[0].tags", "static tags alone are too long");

    // The defaults leave room for the usual static tags over UDP.
    let c = load_with(
        "init_config:\n  tags: [\"team:ml-platform\"]\ninstances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tag_fields: [algorithm_name, algorithm_version, algorithm_owner, region]\n",
        &[("DD_ENV", "prod"), ("DD_SERVICE", "insights"), ("DD_VERSION", "2.1.0")],
    )
    .unwrap();
    let tags = c.instances[0]
        .tags
        .iter()
        .map(|t| t.len() + 1)
        .sum::<usize>()
        - 1;
    assert!(crate::dogstatsd::longest_line(4 * 201 + tags) <= 1432);
}

#[test]
fn a_tag_field_cannot_hold_the_key_value_separator() {
    // Found by the config fuzz target: tag_fields: ["a:b"] wrote tags whose key was `a`.
    let e = rejected(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tag_fields: [x, \"a:b\"]\n",
    );
    assert_eq!(e.key, "instances[0].tag_fields[1]");
    assert!(e.reason.contains("`:`"), "{e}");
}

#[test]
fn a_tag_field_name_must_leave_room_for_a_number() {
    // Found with the config fuzz target: a 190-byte name and an integer value made a 211-byte tag.
    let yaml = |len: usize| {
        format!(
            "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tag_fields: [{}]\n",
            "k".repeat(len)
        )
    };
    load(&yaml(175)).expect("175 bytes, `:` and 24 digits make 200");
    let e = rejected(&yaml(176));
    assert_eq!(e.key, "instances[0].tag_fields[0]");
    assert!(e.reason.contains("176 bytes long"), "{e}");
}

#[test]
fn an_invalid_metric_prefix_is_rejected() {
    for prefix in ["\"1abc\"", "\"a-b\"", "\"a.\"", "\"\""] {
        let e = rejected(&format!(
            "init_config:\n  metric_prefix: {prefix}\n{MINIMAL}"
        ));
        assert_eq!(e.key, "init_config.metric_prefix", "{prefix}");
    }
    assert_eq!(
        load(&format!(
            "init_config:\n  metric_prefix: ml.insights\n{MINIMAL}"
        ))
        .unwrap()
        .metric_prefix,
        "ml.insights"
    );
}

#[test]
fn kafka_options_become_strings_and_cannot_break_offset_storage() {
    let c = load("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    kafka_options:\n      fetch.wait.max.ms: 50\n      check.crcs: true\n").unwrap();
    assert_eq!(
        c.instances[0].kafka_options.get("fetch.wait.max.ms"),
        Some("50")
    );
    assert_eq!(c.instances[0].kafka_options.get("check.crcs"), Some("true"));
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    kafka_options:\n      enable.auto.offset.store: true\n");
    assert_eq!(e.key, "instances[0].kafka_options.enable.auto.offset.store");
}

#[test]
fn empty_patterns_and_fields_are_rejected() {
    let e = rejected(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    include_metrics: [\"\"]\n",
    );
    assert_eq!(e.key, "instances[0].include_metrics[0]");
    let e = rejected(
        "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tag_fields: [a, \"\"]\n",
    );
    assert_eq!(e.key, "instances[0].tag_fields[1]");
}

#[test]
fn secrets_never_appear_when_printed() {
    let yaml = "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: $ConnectionString\n    sasl_password: Endpoint=sb://x/;SharedAccessKey=topsecret\n    kafka_options:\n      ssl.key.password: alsosecret\n      sasl.oauthbearer.client.secret: third\n      fetch.min.bytes: 1\n";
    let config = load(yaml).unwrap();
    let printed = config.redacted_yaml();
    let debugged = format!("{config:?}");
    for secret in ["topsecret", "alsosecret", "third"] {
        assert!(!printed.contains(secret), "{printed}");
        assert!(!debugged.contains(secret), "{debugged}");
    }
    assert!(printed.contains("fetch.min.bytes: '1'"), "{printed}");
    assert!(printed.contains("$ConnectionString"), "{printed}");
}

#[test]
fn the_python_scripts_environment_defines_one_instance() {
    let env = env_of(&[
        ("KAFKA_BROKER", "k:9092"),
        ("KAFKA_TOPIC", "insights"),
        ("KAFKA_GROUP", "old"),
        ("DATADOG_API_KEY", "x"),
    ]);
    let c = Config::from_env(&env).unwrap();
    assert_eq!(c.origin, "environment");
    assert_eq!(c.instances[0].brokers, ["k:9092"]);
    assert_eq!(c.instances[0].consumer_group, "old");
    let e = Config::from_env(&env_of(&[("KAFKA_BROKER", "k:9092")])).unwrap_err();
    assert_eq!(e.key, "KAFKA_TOPIC");
    assert!(e.reason.contains("--config"), "{e}");
}

#[test]
fn an_explicit_file_that_does_not_exist_is_an_error() {
    let e = Config::load(
        Some(Path::new("/nonexistent/algorithmia.yaml")),
        &env_of(&[]),
    )
    .unwrap_err();
    assert_eq!(e.origin, "/nonexistent/algorithmia.yaml");
    assert!(e.reason.contains("cannot read"), "{e}");
}

#[test]
fn a_mistyped_secret_is_rejected_without_echoing_it() {
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: u\n    sasl_password: 12345678\n");
    assert_eq!(e.key, "instances[0].sasl_password");
    assert!(!e.to_string().contains("12345678"), "{e}");
}

#[test]
fn periodic_commits_cannot_be_turned_off() {
    let e = rejected("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    kafka_options:\n      enable.auto.commit: false\n");
    assert_eq!(e.key, "instances[0].kafka_options.enable.auto.commit");
}

#[test]
fn a_port_without_a_host_is_reported_ignored_only_when_it_is() {
    let ignored = |yaml: &str, env: &[(&str, &str)]| load_with(yaml, env).unwrap().ignored;
    let port = [("DD_DOGSTATSD_PORT", "9125")];
    let notes = ignored(MINIMAL, &port);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("DD_DOGSTATSD_PORT is ignored")
            && notes[0].ends_with("sending to udp://127.0.0.1:8125"),
        "{notes:?}"
    );
    // Used with DD_AGENT_HOST; overruled, as documented, by DD_DOGSTATSD_URL or the file.
    for env in [
        &[port[0], ("DD_AGENT_HOST", "agent")][..],
        &[port[0], ("DD_DOGSTATSD_URL", "udp://a:1")][..],
        &[][..],
    ] {
        assert_eq!(ignored(MINIMAL, env), Vec::<String>::new(), "{env:?}");
    }
    let with_url = format!("init_config:\n  dogstatsd_url: udp://a:1\n{MINIMAL}");
    assert_eq!(ignored(&with_url, &port), Vec::<String>::new());
}

#[test]
fn the_old_scripts_variables_beside_a_file_are_reported_ignored() {
    let dir = std::env::temp_dir().join(format!("algorithmia-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("algorithmia.yaml");
    std::fs::write(&path, MINIMAL).unwrap();
    let load = |env: &[(&str, &str)]| Config::load(Some(&path), &env_of(env)).unwrap().0;
    assert_eq!(load(&[]).ignored, Vec::<String>::new());
    let notes = load(&[("KAFKA_TOPIC", "old"), ("KAFKA_GROUP", "g")]).ignored;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("KAFKA_TOPIC, KAFKA_GROUP are ignored: the configuration file ")
            && notes[0].contains(&path.display().to_string()),
        "{notes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn distributions_are_packed_and_udp_is_paced_unless_told_otherwise() {
    let c = load(MINIMAL).unwrap();
    assert!(c.packed_distributions);
    assert_eq!(
        c.udp_max_datagrams_per_second,
        DEFAULT_UDP_MAX_DATAGRAMS_PER_SECOND
    );
    let c = load(&format!(
        "init_config:\n  packed_distributions: false\n  udp_max_datagrams_per_second: 0\n{MINIMAL}"
    ))
    .unwrap();
    assert!(!c.packed_distributions);
    assert_eq!(c.udp_max_datagrams_per_second, 0);
    let printed = c.redacted_yaml();
    assert!(printed.contains("packed_distributions: false"), "{printed}");
    assert!(
        printed.contains("udp_max_datagrams_per_second: 0"),
        "{printed}"
    );
    for bad in [
        "packed_distributions: maybe",
        "udp_max_datagrams_per_second: -5",
    ] {
        let e = rejected(&format!("init_config:\n  {bad}\n{MINIMAL}"));
        let key = bad.split(':').next().unwrap();
        assert!(e.to_string().contains(key), "{bad}: {e}");
    }
}

// ---- every mistake at once, and what an unknown key was meant to be -----------------------------

/// Every line of an error: one mistake each.
fn lines(e: &ConfigError) -> Vec<String> {
    e.to_string().lines().map(String::from).collect()
}

#[test]
fn the_distance_counts_insertions_deletions_substitutions_and_swaps() {
    use super::suggest::distance;
    assert_eq!(distance("", ""), 0);
    assert_eq!(distance("tags", "tags"), 0);
    assert_eq!(distance("", "tags"), 4);
    assert_eq!(distance("tags", ""), 4);
    assert_eq!(distance("kitten", "sitting"), 3);
    assert_eq!(distance("agregation_interval", "aggregation_interval"), 1);
    assert_eq!(distance("kafka_topik", "kafka_topic"), 1);
    assert_eq!(
        distance("kafak_topic", "kafka_topic"),
        1,
        "a swap is one edit"
    );
    assert_eq!(distance("ca", "abc"), 3, "no substring edited twice");
    assert_eq!(distance("café", "cafe"), 1, "characters, not bytes");
    assert_eq!(
        distance("sasl_usrename", "sasl_username"),
        distance("sasl_username", "sasl_usrename")
    );
}

#[test]
fn a_suggestion_is_made_only_for_a_close_key() {
    use super::suggest::meant;
    let keys = Part::Instance.keys();
    for (typed, expected) in [
        ("agregation_interval", "aggregation_interval"),
        ("aggregation_intervall", "aggregation_interval"),
        ("Booleans", "booleans"),
        ("KAFKA_TOPIC", "kafka_topic"),
        ("kafka-topic", "kafka_topic"),
        ("max-contexts", "max_contexts"),
        ("comit_interval", "commit_interval_ms"),
        ("topic", "kafka_topic"),
        ("brokers", "kafka_broker"),
        ("password", "sasl_password"),
    ] {
        assert_eq!(meant(typed, keys), [expected], "{typed}");
    }
    for typed in ["colour", "x", "ta", "kafka", "brokerage_fee"] {
        assert_eq!(meant(typed, keys), Vec::<&str>::new(), "{typed}");
    }
    // Several at the same distance are all named; more than three help nobody.
    assert_eq!(
        meant("metrics", keys),
        ["include_metrics", "exclude_metrics", "distribution_metrics"]
    );
}

#[test]
fn the_key_lists_are_the_structs_own() {
    // Derived from the structs' serde field names: one list, which cannot drift from them.
    assert_eq!(Part::File.keys(), ["init_config", "instances"]);
    assert_eq!(
        Part::Init.keys(),
        [
            "dogstatsd_url",
            "metric_prefix",
            "health_address",
            "health_stall_seconds",
            "packed_distributions",
            "udp_max_datagrams_per_second",
            "tags"
        ]
    );
    let instance = Part::Instance.keys();
    assert_eq!(instance.len(), 23, "{instance:?}");
    assert_eq!(instance[0], "kafka_broker");
    assert_eq!(instance[22], "kafka_options");
    // Each of them is accepted in an instance, and nothing else is.
    for key in instance {
        let yaml = format!("instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    {key}: 0\n");
        if let Err(e) = load(&yaml) {
            assert!(!e.reason.contains("unknown field"), "{key}: {e}");
        }
    }
    assert!(rejected(&format!("{MINIMAL}    kafka_topics: t\n"))
        .reason
        .contains("unknown field"));
}

#[test]
fn a_misspelled_key_is_answered_with_the_key_it_was_meant_to_be() {
    let e = rejected(&format!("{MINIMAL}    agregation_interval: 5\n"));
    assert_eq!(e.key, "instances[0].agregation_interval");
    assert_eq!(
        e.reason,
        "unknown field `agregation_interval`, did you mean `aggregation_interval`?"
    );
    let e = rejected(&format!("init_config:\n  Metric-Prefix: a\n{MINIMAL}"));
    assert_eq!(e.key, "init_config.Metric-Prefix");
    assert!(e.reason.ends_with("did you mean `metric_prefix`?"), "{e}");
    let e = rejected(&format!("instance:\n  - kafka_broker: a:1\n{MINIMAL}"));
    assert_eq!(e.key, "instance");
    assert!(e.reason.ends_with("did you mean `instances`?"), "{e}");
}

#[test]
fn a_far_off_key_lists_the_valid_keys() {
    let e = rejected(&format!("{MINIMAL}    colour: blue\n"));
    assert_eq!(e.key, "instances[0].colour");
    assert!(!e.reason.contains("did you mean"), "{e}");
    let listed = e
        .reason
        .strip_prefix("unknown field `colour`, expected one of ")
        .unwrap_or_else(|| panic!("{e}"));
    let expected: Vec<String> = Part::Instance
        .keys()
        .iter()
        .map(|k| format!("`{k}`"))
        .collect();
    assert_eq!(listed, expected.join(", "));
}

#[test]
fn a_key_of_another_part_is_said_to_belong_there() {
    for (yaml, reason) in [
        (
            format!("{MINIMAL}    metric_prefix: ml\n"),
            "unknown field `metric_prefix` here: it belongs under `init_config`",
        ),
        (
            format!("init_config:\n  kafka_topic: t\n{MINIMAL}"),
            "unknown field `kafka_topic` here: it belongs in an entry of `instances`",
        ),
        (
            format!("{MINIMAL}    metric_prefx: ml\n"),
            "unknown field `metric_prefx`, did you mean `metric_prefix` (which belongs under `init_config`)?",
        ),
        (
            format!("{MINIMAL}    fetch.min.bytes: 1\n"),
            "unknown field `fetch.min.bytes`: a librdkafka property goes under `kafka_options`",
        ),
    ] {
        assert_eq!(rejected(&yaml).reason, reason, "{yaml}");
    }
}

#[test]
fn every_mistake_in_the_file_is_reported_at_once() {
    let yaml = "\
init_config:
  metric_prefx: ml
  tags: [\"a,b\"]
instances:
  - kafka_broker: k1:9092
    kafka_topic: insights
    agregation_interval: 5
    commit_interval_ms: 5
    booleans: maybe
  - kafka_broker: localhost
    kafka_topic: ${NOPE}
    colour: blue
    max_contexts: 0
";
    let e = rejected(yaml);
    let lines = lines(&e);
    let expected = [
        "init_config.metric_prefx: unknown field `metric_prefx`, did you mean `metric_prefix`?",
        "init_config.tags[0]: `a,b` contains ',', which DogStatsD treats as a separator",
        "instances[0].agregation_interval: unknown field `agregation_interval`, did you mean `aggregation_interval`?",
        "instances[0].booleans: invalid type: string \"maybe\", expected a boolean",
        "instances[0].commit_interval_ms: must be between 100 and 60000 (milliseconds), not 5",
        "instances[1].kafka_topic: environment variable NOPE is not set",
        "instances[1].colour: unknown field `colour`, expected one of",
        "instances[1].kafka_broker: `localhost` is not host:port",
        "instances[1].max_contexts: must be at least 1",
    ];
    assert_eq!(lines.len(), expected.len(), "{e}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(&format!("algorithmia.yaml: {expected}")),
            "{line:?} is not {expected:?}:\n{e}"
        );
    }
    // The first mistake is the error's own key and reason; the others follow its first line.
    assert_eq!(e.key, "init_config.metric_prefx");
    assert_eq!(e.origin, "algorithmia.yaml");
    let first = lines[0].strip_prefix("algorithmia.yaml: init_config.metric_prefx: ");
    assert_eq!(e.reason.lines().next(), first);
}

#[test]
fn a_type_error_in_one_instance_hides_none_in_another() {
    let yaml = "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    tags: team:ml\n  - kafka_broker: [b:1]\n    kafka_topic: t\n    start_offset: middle\n  - kafka_broker: c:1\n    kafka_topic: t\n    numeric_strings: 3\n";
    let keys: Vec<String> = lines(&rejected(yaml))
        .iter()
        .map(|l| l.split(": ").nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "instances[0].tags",
            "instances[1].start_offset",
            "instances[2].numeric_strings"
        ]
    );
}

#[test]
fn a_setting_that_cannot_be_read_is_reported_once() {
    // Not also as missing, empty, or as what its default would make of the settings around it.
    let sasl = [
        "kafka_broker: a:1",
        "kafka_topic: t",
        "security_protocol: SASL_SSL",
        "sasl_mechanism: PLAIN",
        "sasl_username: u",
        "sasl_password: p",
    ];
    for (setting, key) in [
        ("kafka_topic: [t]", "instances[0].kafka_topic"),
        ("kafka_topic: ${NOPE}", "instances[0].kafka_topic"),
        ("kafka_broker: {a: 1}", "instances[0].kafka_broker"),
        ("security_protocol: TLS", "instances[0].security_protocol"),
        ("sasl_password: ${NOPE}", "instances[0].sasl_password"),
    ] {
        let name = setting.split(':').next().unwrap_or_default();
        let settings: Vec<&str> = sasl
            .iter()
            .map(|s| {
                if s.split(':').next() == Some(name) {
                    setting
                } else {
                    s
                }
            })
            .collect();
        let e = rejected(&format!("instances:\n  - {}\n", settings.join("\n    ")));
        assert_eq!(lines(&e).len(), 1, "{setting}:\n{e}");
        assert_eq!(e.key, key, "{setting}");
    }
    // A required key left out is said to be missing, once, and the rest is still checked.
    let e = rejected("instances:\n  - kafka_topic: t\n    max_contexts: 0\n");
    assert_eq!(e.key, "instances[0]");
    assert_eq!(
        e.reason.lines().next(),
        Some("missing field `kafka_broker`")
    );
    assert_eq!(lines(&e).len(), 2, "{e}");
    assert!(lines(&e)[1].contains("instances[0].max_contexts"), "{e}");
    // A destination that cannot be read is not replaced by the environment's, and the checks
    // that depend on it are not made.
    let e = load_with(
        &format!("init_config:\n  dogstatsd_url: [x]\n{MINIMAL}"),
        &[("DD_DOGSTATSD_URL", "nonsense")],
    )
    .unwrap_err();
    assert_eq!(lines(&e).len(), 1, "{e}");
    assert_eq!(e.key, "init_config.dogstatsd_url");
}

#[test]
fn secrets_stay_hidden_among_many_mistakes() {
    let yaml = "instances:\n  - kafka_broker: a:1\n    kafka_topic: t\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: u\n    sasl_password: 12345678\n    kafka_options:\n      ssl.key.password: \"p${xyzzy}\"\n  - kafka_broker: b:1\n    kafka_topic: t\n    sasl_pasword: hunter2\n    SASL_PASSWORD: hunter3\n    security_protocol: SASL_SSL\n    sasl_mechanism: PLAIN\n    sasl_username: u\n    sasl_password: \"p${xyzzy\"\n";
    let e = rejected(yaml);
    let shown = e.to_string();
    assert_eq!(lines(&e).len(), 5, "{shown}");
    for secret in ["12345678", "xyzzy", "hunter2", "hunter3"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("did you mean `sasl_password`?"), "{shown}");
}

#[test]
fn a_syntax_error_is_reported_alone() {
    let e = rejected("instances:\n  - kafka_broker: [a:1\n  colour: 1\n");
    assert_eq!(e.key, "(syntax)");
    assert_eq!(lines(&e).len(), 1, "{e}");
}

#[test]
fn a_line_break_in_a_quoted_value_stays_on_its_mistakes_line() {
    let e = rejected(&format!(
        "{MINIMAL}    tags: [\"a\\nb\"]\n    max_contexts: 0\n"
    ));
    assert_eq!(lines(&e).len(), 2, "{e}");
    assert!(lines(&e)[1].contains("tags[0]: `a\\nb` contains"), "{e}");
}
