//! gflags spellings shared by our commands (`mooncake-bench`, `mooncake_client`, and the value
//! checks of `mooncake_master`): Mooncake's commands take gflags command lines, ours parse them
//! with clap after [`normalize`] rewrites the spellings clap does not know.

/// gflags' boolean values (`true/false`, `t/f`, `yes/no`, `y/n`, `1/0`, any case).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// [`parse_bool`] as a clap value parser.
pub fn clap_bool(v: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| format!("{v:?} is not a boolean (true/false, yes/no, 1/0)"))
}

/// Rewrites gflags-only spellings into ones clap reads: `-flag…` → `--flag…`, and for the
/// names in `bool_flags` `--noflag` → `--flag=false`. `args[0]` and the arguments after a bare
/// `--` are left alone.
pub fn normalize<I: IntoIterator<Item = String>>(args: I, bool_flags: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || rest {
            out.push(a);
            continue;
        }
        if a == "--" {
            rest = true;
            out.push(a);
            continue;
        }
        let mut a = a;
        if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") && a.as_bytes()[1].is_ascii_alphabetic() {
            a = format!("-{a}");
        }
        if let Some(name) = a.strip_prefix("--no")
            && bool_flags.contains(&name)
        {
            a = format!("--{name}=false");
        }
        out.push(a);
    }
    out
}
