//! Human-readable sizes, read as Mooncake's `string_to_byte_size` reads them: a number
//! (fractions allowed) and an optional unit `B`, `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` in
//! any case, powers of 1024, spaces allowed between; `infinite` is `u64::MAX`.

/// The byte count of `text`, or `None` when it is not a size (negative, unknown unit, "%").
pub fn parse_size(text: &str) -> Option<u64> {
    let s = text.trim();
    if s == "infinite" {
        return Some(u64::MAX);
    }
    let split =
        s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let scale = match unit.trim_start().to_ascii_uppercase().as_str() {
        "" | "B" => 1.0,
        "K" | "KB" => 1024.0,
        "M" | "MB" => 1024.0 * 1024.0,
        "G" | "GB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_mooncake_reads_them() {
        assert_eq!(parse_size("4 GB"), Some(4 << 30));
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("16mb"), Some(16 << 20));
        assert_eq!(parse_size("1.5 G"), Some(3 << 29));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size(" 0 "), Some(0));
        assert_eq!(parse_size("infinite"), Some(u64::MAX));
        for bad in ["", "GB", "10%", "-1MB", "3 parsecs", "1 KiB"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
