//! The Prometheus text exposition format, as the control plane and the proxy write it: label
//! values escaped (a proxy id or service name holding a quote, backslash or newline must not
//! forge a series), the standard `process_*` metrics from `/proc` text, and a build info
//! series. Pure: the binaries read `/proc` and pass its text in.

use std::fmt::Write;

/// Appends `value` escaped as the format requires inside a label's quotes.
pub fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A label set: `a="x",b="y"`, values escaped.
pub fn labels<V: AsRef<str>>(pairs: &[(&str, V)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        push_escaped(&mut out, value.as_ref());
        out.push('"');
    }
    out
}

/// `trellis_build_info{component,version} 1`: which build answers, for dashboards and alerts
/// across an upgrade.
pub fn build_info(out: &mut String, component: &str, version: &str) {
    let name = "trellis_build_info";
    let _ = writeln!(out, "# HELP {name} The build of this Trellis component.\n# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{{}}} 1", labels(&[("component", component), ("version", version)]));
}

/// What `/proc` says of this process, read by the caller; what could not be read stays
/// empty and its metrics are left out.
#[derive(Clone, Debug, Default)]
pub struct ProcFiles {
    /// `/proc/self/stat`.
    pub stat: String,
    /// `/proc/self/status`.
    pub status: String,
    /// `/proc/self/limits`.
    pub limits: String,
    /// `/proc/stat` (for the boot time).
    pub system_stat: String,
    /// Entries in `/proc/self/fd`.
    pub open_fds: usize,
}

/// Linux's clock ticks per second for `/proc` times on every architecture Trellis builds for.
const TICKS_PER_S: f64 = 100.0;

/// The `process_*` metrics Prometheus's client libraries export, with their names and meanings.
pub fn process(out: &mut String, files: &ProcFiles) {
    let fields: Vec<&str> =
        files.stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let kb = |key: &str| {
        files.status.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse::<f64>().ok())
    };
    let boot = files.system_stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok());
    let max_fds = files
        .limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next()?.parse::<f64>().ok());
    // After the command's closing parenthesis: utime is the 12th field, stime the 13th,
    // starttime (ticks after boot) the 20th.
    let cpu = field(11).zip(field(12)).map(|(u, s)| (u + s) / TICKS_PER_S);
    let start = field(19).zip(boot).map(|(ticks, boot)| boot + ticks / TICKS_PER_S);
    let metrics = [
        ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", kb("VmRSS:").map(|k| k * 1024.0)),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", kb("VmSize:").map(|k| k * 1024.0)),
        ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            Some(files.open_fds as f64).filter(|n| *n > 0.0),
        ),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds),
    ];
    for (name, kind, help, value) in metrics {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_value_cannot_close_its_quotes_or_start_a_line() {
        let forged = "x\"} 1\nevil_total{a=\"\\";
        let text = labels(&[("proxy_id", forged)]);
        assert_eq!(text, r#"proxy_id="x\"} 1\nevil_total{a=\"\\""#);
        assert!(!text.contains('\n'));
    }

    #[test]
    fn process_metrics_come_from_proc_text() {
        let files = ProcFiles {
            stat: "42 (trellis (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 1000000 300 18446744073709551615".into(),
            status: "Name:\ttrellis\nVmSize:\t  20000 kB\nVmRSS:\t   5000 kB\n".into(),
            limits: "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n".into(),
            system_stat: "cpu  1 2 3\nbtime 1700000000\n".into(),
            open_fds: 12,
        };
        let mut out = String::new();
        process(&mut out, &files);
        for line in [
            "process_cpu_seconds_total 3",
            "process_resident_memory_bytes 5120000",
            "process_virtual_memory_bytes 20480000",
            "process_start_time_seconds 1700000010",
            "process_open_fds 12",
            "process_max_fds 1024",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        let mut empty = String::new();
        process(&mut empty, &ProcFiles::default());
        assert!(empty.is_empty(), "nothing read, nothing claimed: {empty}");
    }
}
