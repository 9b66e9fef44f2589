use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(Some(&path), &env(vars))
}

#[test]
fn the_shipped_file_is_the_embedded_default() {
    let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
    assert_eq!(parsed, Config::default());
    let loaded = Config::load(None, &BTreeMap::new()).unwrap();
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn the_shipped_file_sets_every_key_and_names_its_variable() {
    let shipped: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
    assert_eq!(shipped, default_table());
    for (var, _, _) in env_keys() {
        assert!(
            DEFAULT_TOML.contains(&var),
            "config/sluice.toml does not mention {var}"
        );
    }
    assert!(DEFAULT_TOML.contains(LOG_ENV));
}

#[test]
fn the_default_maps_onto_the_broker_defaults() {
    let ours = Config::default().broker_config().unwrap();
    let theirs = BrokerConfig::default();
    assert_eq!(ours.manager.log, theirs.manager.log);
    assert_eq!(ours.iterator_ttl_ms, theirs.iterator_ttl_ms);
    assert_eq!(ours.put_records_max, theirs.put_records_max);
    assert_eq!(ours.put_records_bytes_max, theirs.put_records_bytes_max);
    assert_eq!(ours.get_records_max, theirs.get_records_max);
    assert_eq!(ours.get_records_bytes_max, theirs.get_records_bytes_max);
    assert_eq!(ours.throughput_limits, theirs.throughput_limits);
    assert_eq!(ours.maintenance_interval_ms, theirs.maintenance_interval_ms);
    assert_eq!(ours.subscription_ttl_ms, theirs.subscription_ttl_ms);
    assert_eq!(ours.subscriptions_max, theirs.subscriptions_max);
    assert_eq!(
        ours.subscriptions_per_shard_max,
        theirs.subscriptions_per_shard_max
    );
    assert_eq!(ours.subscription_bytes_max, theirs.subscription_bytes_max);
    assert_eq!(
        ours.subscription_bytes_total_max,
        theirs.subscription_bytes_total_max
    );
    assert_eq!(
        ours.subscription_takeover_ms,
        theirs.subscription_takeover_ms
    );
    assert_eq!(ours.manager.region, theirs.manager.region);
    assert_eq!(ours.manager.open_shards_max, theirs.manager.open_shards_max);
    assert_eq!(
        ours.manager.journal_compact_bytes,
        theirs.manager.journal_compact_bytes
    );
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    for (text, key) in [
        ("segment_size = \"1MiB\"\n", "segment_size"),
        ("[storage]\nsync = \"always\"\n", "sync"),
        ("[kinesis]\nlisten = \"127.0.0.1:4568\"\n", "kinesis"),
    ] {
        let err = load_text(text, &[]).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{err}");
    }
}

#[test]
fn a_partial_file_keeps_the_other_defaults() {
    let loaded = load_text(
        "[storage]\nsync_mode = \"interval\"\nsync_interval = \"20ms\"\n",
        &[],
    )
    .unwrap();
    let config = loaded.config.broker_config().unwrap();
    assert_eq!(
        config.manager.log.sync,
        SyncMode::Interval { interval_ms: 20 }
    );
    assert_eq!(loaded.config.grpc_listen, Config::default().grpc_listen);
}

#[test]
fn environment_overrides_the_file_by_section_and_key() {
    let loaded = load_text(
        "data_dir = \"/from/file\"\n[limits]\nput_records_max = 7\n",
        &[
            ("SLUICE_DATA_DIR", "/from/env"),
            ("SLUICE_GRPC_LISTEN", "127.0.0.1:9999"),
            ("SLUICE_LIMITS_PUT_RECORDS_MAX", "9"),
            ("SLUICE_BROKER_THROUGHPUT_LIMITS", "true"),
            ("SLUICE_STORAGE_SEGMENT_SIZE_MAX", "64MiB"),
            ("SLUICE_LOG_FILTER", "warn"),
            ("SLUICE_LOG", "debug"),
            ("SLUICE_SEED", "1"),
        ],
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.data_dir, PathBuf::from("/from/env"));
    assert_eq!(c.grpc_listen.port(), 9999);
    assert_eq!(c.limits.put_records_max, 9);
    assert!(c.broker.throughput_limits);
    assert_eq!(c.storage.segment_size_max, ByteSize(64 << 20));
    assert_eq!(c.log_filter, "debug");
    assert_eq!(loaded.unknown_env, vec!["SLUICE_SEED".to_string()]);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let err = Config::load(None, &env(&[("SLUICE_LIMITS_PUT_RECORDS_MAX", "many")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SLUICE_LIMITS_PUT_RECORDS_MAX"), "{err}");
    let err = Config::load(None, &env(&[("SLUICE_STORAGE_SYNC_INTERVAL", "soon")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sync_interval"), "{err}");
}

#[test]
fn out_of_range_values_are_refused_with_their_key() {
    let check = |text: &str, key: &str| {
        let config = load_text(text, &[]).unwrap().config;
        let err = config.broker_config().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    };
    check(
        "[storage]\nsegment_size_max = \"1KiB\"\n",
        "segment_bytes_max",
    );
    check(
        "[storage]\nindex_interval = \"8GiB\"\n",
        "storage.index_interval",
    );
    check(
        "[limits]\nsubscriptions_per_shard_max = 0\n",
        "limits.subscriptions_per_shard_max",
    );
    check(
        "[limits]\nsubscription_buffer_total_size_max = \"8MiB\"\n",
        "limits.subscription_buffer_total_size_max",
    );
    check(
        "[limits]\nsubscription_buffer_size_max = \"32MiB\"\nsubscription_buffer_total_size_max = \"16MiB\"\n",
        "limits.subscription_buffer_total_size_max",
    );
    check("[limits]\nput_records_max = 0\n", "limits.put_records_max");
    check("log_filter = \"[[[\"\n", "log_filter");
}

#[test]
fn the_connection_cap_keeps_the_reserve_free() {
    let network = NetworkSection::default();
    assert_eq!(network.connections_cap(None).unwrap(), 10_000);
    assert_eq!(network.connections_cap(Some(1 << 20)).unwrap(), 10_000);
    assert_eq!(network.connections_cap(Some(4096)).unwrap(), 4096 - 1024);
    let err = network.connections_cap(Some(1024)).unwrap_err().to_string();
    assert!(err.contains("network.fd_reserve"), "{err}");
}

#[test]
fn network_limits_are_checked() {
    let check = |text: &str, key: &str| {
        let config = load_text(text, &[]).unwrap().config;
        let err = config.broker_config().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    };
    check(
        "[network]\nrequest_bytes_in_flight_per_client_max = \"1MiB\"\n",
        "network.request_bytes_in_flight_per_client_max",
    );
    check(
        "[network]\nrequest_bytes_in_flight_max = \"32MiB\"\n",
        "network.request_bytes_in_flight_max",
    );
    check("[network]\nh2_streams_max = 0\n", "network.h2_streams_max");
    check(
        "[network]\nidle_timeout = \"10ms\"\n",
        "network.idle_timeout",
    );
    let loaded = Config::load(
        None,
        &env(&[("SLUICE_NETWORK_CONNECTIONS_PER_CLIENT_MAX", "4")]),
    )
    .unwrap();
    assert_eq!(loaded.config.network.connections_per_client_max, 4);
}

#[test]
fn the_printed_configuration_loads_back_unchanged() {
    let mut config = Config::default();
    config.storage.segment_age_max = MillisOrNever(None);
    config.storage.sync_mode = SyncModeName::Interval;
    let loaded = load_text(&config.to_toml(), &[]).unwrap();
    assert_eq!(loaded.config, config);
}
