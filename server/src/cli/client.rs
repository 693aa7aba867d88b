//! Talking to a running control plane through `/api/v1`, as the dashboard does: the commands
//! that steer rollouts and revert revisions.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

#[derive(clap::Args, Debug)]
pub struct ControlPlane {
    /// The control plane's address.
    #[arg(long, global = true, env = "TRELLIS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An operator's token, for what changes the mesh (reading needs none).
    #[arg(long, global = true, env = "TRELLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of the CA that signed an https:// control plane's certificate, when the
    /// system does not trust it already.
    #[arg(long, global = true, env = crate::https::CA_ENV)]
    pub control_plane_ca: Option<std::path::PathBuf>,
}

impl ControlPlane {
    /// The body of a successful answer, or an exit code (1 refused, 2 could not ask) and the
    /// control plane's own message.
    pub async fn call(&self, method: http::Method, path: &str) -> Result<Bytes, (i32, String)> {
        let client = crate::https::client(self.control_plane_ca.as_deref()).map_err(|e| (2, e))?;
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req.body(Full::default()).map_err(|e| (2, format!("bad server address {url:?}: {e}")))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| (2, format!("cannot reach {}: {}", self.server, crate::https::with_causes(&e))))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| (2, e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<crate::api::openapi::Problem>(&body)
            .map(|p| p.detail)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err((1, format!("{status}: {message}")))
    }
}

/// Says why on stderr and gives the exit code back.
pub fn fail(code: i32, message: &str) -> i32 {
    eprintln!("error: {message}");
    code
}
