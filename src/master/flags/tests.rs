use std::time::Duration;

use super::*;

fn run(args: &[&str]) -> Result<(MasterConfig, Vec<String>), FlagError> {
    match parse(args.iter().map(|s| s.to_string()))? {
        Command::Run { config, ignored } => Ok((*config, ignored)),
        other => panic!("not a run: {other:?}"),
    }
}

#[test]
fn defaults_are_the_wheels() {
    let (c, ignored) = run(&[]).unwrap();
    assert!(ignored.is_empty());
    assert_eq!((c.rpc_address.as_str(), c.rpc_port, c.metrics_port), ("0.0.0.0", 50051, 9003));
    assert_eq!(c.policy.lease_ttl, Duration::from_millis(10_000));
    assert_eq!(c.policy.soft_pin_ttl, Duration::from_millis(1_800_000));
    assert!((c.policy.high_watermark - 0.9).abs() < 1e-12);
    assert!((c.policy.eviction_ratio - 0.05).abs() < 1e-12);
    assert_eq!(c.policy.client_ttl, Duration::from_secs(10));
    assert_eq!(c.policy.put_discard_timeout, Duration::from_secs(30));
    assert_eq!(c.policy.put_release_timeout, Duration::from_secs(600));
    assert!(c.enable_metric_reporting && !c.enable_http_metadata_server && c.policy.allow_evict_soft_pinned);
    assert_eq!(c.http_metadata_server_port, 8080);
    assert!(c.rpc_threads >= 1 && c.rpc_threads <= 16);
    assert_eq!(c, MasterConfig { rpc_threads: c.rpc_threads, ..MasterConfig::default() });
}

#[test]
fn every_gflags_spelling_works() {
    let (c, _) = run(&[
        "--rpc_port=1234",
        "-metrics_port",
        "4321",
        "--enable_http_metadata_server",
        "--noenable_metric_reporting",
        "--allow_evict_soft_pinned_objects=F",
        "--default_kv_lease_ttl=2s",
        "-default_kv_soft_pin_ttl=5m",
        "--eviction_high_watermark_ratio",
        "0.5",
        "--client_ttl=0x10",
        "positional",
        "--",
        "--bogus",
    ])
    .unwrap();
    assert_eq!((c.rpc_port, c.metrics_port), (1234, 4321));
    assert!(c.enable_http_metadata_server && !c.enable_metric_reporting && !c.policy.allow_evict_soft_pinned);
    assert_eq!(c.policy.lease_ttl, Duration::from_secs(2));
    assert_eq!(c.policy.soft_pin_ttl, Duration::from_secs(300));
    assert!((c.policy.high_watermark - 0.5).abs() < 1e-12);
    assert_eq!(c.policy.client_ttl, Duration::from_secs(16));
}

#[test]
fn port_is_the_older_name_and_rpc_port_wins() {
    assert_eq!(run(&["--port=7000"]).unwrap().0.rpc_port, 7000);
    assert_eq!(run(&["--port=7000", "--rpc_port=7001"]).unwrap().0.rpc_port, 7001);
    assert_eq!(run(&["--rpc_thread_num=3"]).unwrap().0.rpc_threads, 3);
    assert_eq!(run(&["--max_threads=1"]).unwrap().0.rpc_threads, 1);
}

#[test]
fn bad_command_lines_are_refused_with_gflags_words() {
    let err = |args: &[&str]| run(args).unwrap_err().0;
    assert_eq!(err(&["--bogus=1"]), "ERROR: unknown command line flag 'bogus'");
    assert_eq!(err(&["--nobogus"]), "ERROR: unknown command line flag 'nobogus'");
    assert_eq!(err(&["--rpc_port=abc"]), "ERROR: illegal value 'abc' specified for int32 flag 'rpc_port'");
    assert_eq!(err(&["--enable_ha=maybe"]), "ERROR: illegal value 'maybe' specified for bool flag 'enable_ha'");
    assert_eq!(
        err(&["--put_start_release_timeout_sec=-1"]).split(" flag").next(),
        Some("ERROR: illegal value '-1' specified for uint64")
    );
    assert!(err(&["--default_kv_lease_ttl=abc"]).starts_with("ERROR: failed validation of new value 'abc'"));
    assert!(err(&["--rpc_address"]).starts_with("ERROR: flag 'rpc_address' is missing its argument"));
    assert!(err(&["--rpc_port=70000"]).contains("not a TCP port"));
    assert!(err(&["--eviction_ratio=1.5"]).contains("eviction_ratio"));
    assert!(err(&["--enable_ha"]).contains("not available in this build"));
    assert!(err(&["--noenable_ha=true"]).contains("unknown command line flag"));
    // --undefok lets named unknown flags through.
    assert!(run(&["--bogus=1", "--undefok=bogus,other"]).is_ok());
}

#[test]
fn flags_we_do_not_implement_are_accepted_and_reported() {
    let (_, ignored) = run(&["--enable_offload=true", "--root_fs_dir=/tmp/x", "-logtostderr", "--v=2"]).unwrap();
    assert_eq!(ignored, ["--enable_offload=true", "--root_fs_dir=/tmp/x", "--logtostderr=true", "--v=2"]);
}

#[test]
fn help_and_version() {
    let Command::Help(text) = parse(["--help".to_string()]).unwrap() else { panic!() };
    assert!(text.contains("-default_kv_lease_ttl (") && text.contains("default: \"10000\""));
    assert!(text.contains("-enable_offload (Enable offload availability) [accepted, ignored by this build]"));
    assert!(matches!(parse(["--version".to_string()]).unwrap(), Command::Version(_)));
    assert!(matches!(parse(["--helpmatch=master".to_string()]).unwrap(), Command::Help(_)));
}

#[test]
fn flag_files_and_json_config_files() {
    let dir = std::env::temp_dir().join(format!("mc-master-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flagfile = dir.join("flags");
    std::fs::write(&flagfile, "# comment\n--rpc_port=6000\n\n-enable_http_metadata_server\n").unwrap();
    let (c, _) = run(&[&format!("--flagfile={}", flagfile.display()), "--metrics_port=6001"]).unwrap();
    assert_eq!((c.rpc_port, c.metrics_port, c.enable_http_metadata_server), (6000, 6001, true));

    let json = dir.join("master.json");
    std::fs::write(
        &json,
        r#"{"rpc_port": 6100, "default_kv_lease_ttl": "3s", "enable_metric_reporting": false, "eviction_ratio": 0.1}"#,
    )
    .unwrap();
    let (c, _) = run(&[&format!("--config_path={}", json.display()), "--rpc_port=6200"]).unwrap();
    assert_eq!(c.rpc_port, 6200, "the command line wins");
    assert_eq!(c.policy.lease_ttl, Duration::from_secs(3));
    assert!(!c.enable_metric_reporting);
    assert!((c.policy.eviction_ratio - 0.1).abs() < 1e-12);
    assert!(run(&["--config_path=/x/master.yaml"]).unwrap_err().0.contains("YAML"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn durations_parse_like_mooncakes() {
    assert_eq!(parse_duration_ms("10000"), Some(10_000));
    assert_eq!(parse_duration_ms(" 5 S "), Some(5_000));
    assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
    assert_eq!(parse_duration_ms("7ms"), Some(7));
    assert_eq!(parse_duration_ms("1d"), None);
    assert_eq!(parse_duration_ms("-1"), None);
    assert_eq!(parse_duration_ms(""), None);
    assert_eq!(parse_duration_ms("99999999999999999999h"), None);
}
