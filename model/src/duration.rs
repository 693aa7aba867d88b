//! Durations as people write them: `250ms`, `10s`, `1m`, `2h`, or a combination like `1m30s`.

/// Parses into milliseconds. Refuses zero-unit numbers (`10`): a bare number is ambiguous.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{text}` is not a duration like 250ms, 10s or 1m30s"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{text}` has no unit: write {n}ms or {n}s")),
            u => return Err(format!("`{text}`: unknown unit `{u}` (use ms, s, m or h)")),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(factor).and_then(|v| total.checked_add(v)).ok_or(format!("`{text}` is too large"))?;
    }
    Ok(total)
}

/// The shortest exact rendering: 1500 → `1500ms`, 60000 → `1m`.
pub fn format_ms(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_ms("250ms"), Ok(250));
        assert_eq!(parse_ms("1m30s"), Ok(90_000));
        assert_eq!(parse_ms("2h"), Ok(7_200_000));
        assert!(parse_ms("10").unwrap_err().contains("no unit"));
        assert!(parse_ms("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_ms("ms").is_err());
        assert!(parse_ms("99999999999999999999s").is_err());
        assert_eq!(format_ms(90_000), "90s");
        assert_eq!(format_ms(60_000), "1m");
        assert_eq!(format_ms(250), "250ms");
    }
}
