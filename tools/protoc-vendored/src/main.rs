//! Prints `PROTOC=<path>` and `PROTOC_INCLUDE=<path>` for the vendored protoc.

fn main() {
    let located = protoc_bin_vendored::protoc_bin_path().and_then(|bin| Ok((bin, protoc_bin_vendored::include_path()?)));
    match located {
        Ok((bin, include)) => {
            println!("PROTOC={}", bin.display());
            println!("PROTOC_INCLUDE={}", include.display());
        }
        Err(e) => {
            eprintln!("protoc-vendored: no vendored protoc for this platform: {e}");
            std::process::exit(1);
        }
    }
}
