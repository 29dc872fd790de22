//! gflags command lines (`src/gflags.rs`, `mooncake_master`'s `src/master/flags`, and
//! `mooncake-bench`'s clap flags over `gflags::normalize`): the input is an argv, arguments
//! split at NUL bytes. Flags that name a file or the environment to read (`--flagfile`,
//! `--config_path`, `--fromenv`, `--tryfromenv`) are left out: what they read is the operator's,
//! and the fuzzer would only find files on this machine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::bench::flags::Flags;
use mooncake::gflags;
use mooncake::master::flags::{self, Command};

fn reads_elsewhere(arg: &str) -> bool {
    ["flagfile", "config_path", "fromenv"].iter().any(|f| arg.contains(f))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let args: Vec<String> = text.split('\0').filter(|a| !reads_elsewhere(a)).map(str::to_string).collect();
    for a in &args {
        if let Some(b) = gflags::parse_bool(a) {
            assert_eq!(gflags::parse_bool(if b { "true" } else { "false" }), Some(b));
            assert!(a.len() <= 5);
        }
        if let Some(ms) = flags::parse_duration_ms(a) {
            assert_eq!(flags::parse_duration_ms(&ms.to_string()), Some(ms));
        }
    }
    let mut argv = vec!["prog".to_string()];
    argv.extend(args.iter().cloned());
    let normal = gflags::normalize(argv.clone(), &["verify", "json"]);
    assert_eq!(normal.len(), argv.len());
    assert_eq!(normal[0], "prog");
    if let Some(end) = argv.iter().skip(1).position(|a| a == "--") {
        assert_eq!(normal[end + 1..], argv[end + 1..], "nothing after `--` is rewritten");
    }
    match flags::parse(args) {
        Ok(Command::Run { config, .. }) => {
            assert!(config.rpc_threads >= 1);
            let p = &config.policy;
            assert!(p.high_watermark > 0.0 && p.high_watermark <= 1.0);
            assert!((0.0..=1.0).contains(&p.eviction_ratio));
        }
        Ok(_) | Err(_) => {}
    }
    // clap builds its whole command for every parse: one input in 16 (by its length) also goes
    // through `mooncake-bench`'s flags, so that the rest run at the parsers' own speed.
    if data.len() % 16 == 0
        && let Ok(mut f) = Flags::parse_args(argv)
    {
        let _ = f.check();
    }
});
