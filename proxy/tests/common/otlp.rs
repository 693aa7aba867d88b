//! A real OTLP/HTTP receiver (`tests/otlp/receiver.py`: OpenTelemetry's protobuf messages from
//! PyPI) and proxy settings that export to it.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Receiver {
    child: Child,
    pub endpoint: String,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Answers the first `refuse` exports 503.
    pub fn start(refuse: u32) -> Receiver {
        let script = format!("{}/tests/otlp/receiver.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(super::python())
            .args([script, refuse.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is required for this test");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port = String::new();
        out.read_line(&mut port).unwrap();
        let port: u16 = port.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the OTLP receiver did not start: is opentelemetry-proto installed for {}? (scripts/setup.sh --for-tests)",
                super::python()
            )
        });
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                // A line that is not JSON is kept as text, for the assertion that fails to show.
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                kept.lock().unwrap().push(value);
            }
        });
        Receiver { child, endpoint: format!("http://127.0.0.1:{port}"), lines }
    }

    /// Everything it printed so far: spans, and the exports it refused or could not decode.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The spans of `trace`, once there are `n` of them (within 10 s).
    pub async fn trace(&self, trace: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let spans: Vec<Value> = self.lines().into_iter().filter(|s| s["trace_id"] == trace).collect();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} spans of {trace} never came; the receiver saw {:?}", self.lines())
    }
}

/// Export settings as the standard variables give them, for a proxy named `name`.
pub fn settings(endpoint: &str, name: &str, more: &[(&str, &str)]) -> trellis_proxy::otlp::Settings {
    let mut env: std::collections::HashMap<&str, &str> =
        [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_SERVICE_NAME", name), ("OTEL_BSP_SCHEDULE_DELAY", "50")]
            .into();
    env.extend(more.iter().copied());
    let mut errors = Vec::new();
    let got = |k: &str| env.get(k).map(|v| v.to_string());
    let s = trellis_proxy::otlp::Settings::from_lookup(&got, ("svc", "v1", name), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    s.unwrap()
}
