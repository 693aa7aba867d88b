//! What both Trellis binaries (`trellis`, `trellis-proxy`) ask of the host they run on: telling
//! systemd how they are doing, reading `/proc` for the `process_*` metrics, and the TLS (trust
//! roots) a client of an `https://` control plane checks it with. Kept apart from the policy
//! model, which does no I/O, and small: each function is the whole of its concern.

#![forbid(unsafe_code)]

use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::path::Path;

/// Tells systemd how the service is doing (`READY=1` once it serves, `STOPPING=1` as it
/// drains) when a `Type=notify` unit started it and so set `NOTIFY_SOCKET`; otherwise nothing.
/// A socket name starting with '@' is in the abstract namespace.
pub fn notify_systemd(state: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            let addr =
                <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr).map(drop)
        }
        None => socket.send_to(state.as_bytes(), &path).map(drop),
    }
}

/// This process's `/proc` files, for [`trellis_model::exposition::process`].
pub fn proc_files() -> trellis_model::exposition::ProcFiles {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    trellis_model::exposition::ProcFiles {
        stat: read("/proc/self/stat"),
        status: read("/proc/self/status"),
        limits: read("/proc/self/limits"),
        system_stat: read("/proc/stat"),
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
    }
}

/// TLS 1.3 toward a control plane served over HTTPS, trusting [`trust_roots`].
pub fn client_tls(ca_file: Option<&Path>, setting: &str) -> Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(trust_roots(ca_file, setting)?)
        .with_no_client_auth())
}

/// The system's trust roots and, when named, the PEM certificates in `ca_file` (a private CA,
/// or a self-signed certificate); `setting` names where the file came from in errors.
pub fn trust_roots(ca_file: Option<&Path>, setting: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without a bundle still reaches a control plane whose CA is named.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{setting} {}: holds no certificate", path.display()));
        }
        roots.add_parsable_certificates(certs);
    }
    Ok(roots)
}

/// Whether the server at `addr` answers `GET path` with 200, within two seconds: a container's
/// health check, where there is no curl (the images hold the binary alone). A wildcard address
/// is asked on loopback.
pub fn probe(addr: std::net::SocketAddr, path: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let addr = match addr.ip() {
        ip if ip.is_unspecified() => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    };
    let wait = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, wait).map_err(|e| format!("{addr}: {e}"))?;
    stream.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    // One write: `write!` sends each piece of the format on its own, and a server that answers
    // after the first piece and closes makes the next one a broken pipe.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    // The status line, however it arrives in pieces.
    let (mut head, mut n) = ([0u8; 64], 0);
    while n < head.len() && !head[..n].contains(&b'\n') {
        match stream.read(&mut head[n..]).map_err(|e| format!("{addr}: {e}"))? {
            0 => break,
            read => n += read,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or_default().to_string();
    if status == "200" { Ok(()) } else { Err(format!("{addr}{path} answered {status:?}")) }
}

/// An error with its causes: an HTTP client's own message ("client error (Connect)") hides
/// what went wrong (a refused connection, a certificate not trusted) in its sources.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    /// A server answering one connection with `status`.
    fn answering(status: &'static str) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole request head, as a real server reads it before answering.
            let (mut head, mut buf) = (Vec::new(), [0u8; 256]);
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(s, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        });
        addr
    }

    #[test]
    fn a_probe_is_ready_on_200_only_and_asks_a_wildcard_on_loopback() {
        assert_eq!(super::probe(answering("200 OK"), "/ready"), Ok(()));
        let not = super::probe(answering("503 Service Unavailable"), "/ready").unwrap_err();
        assert!(not.ends_with("/ready answered \"503\""), "{not}");
        let wildcard = answering("200 OK");
        assert_eq!(super::probe(std::net::SocketAddr::from(([0, 0, 0, 0], wildcard.port())), "/ready"), Ok(()));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(super::probe(closed, "/ready").is_err(), "nobody listening");
    }

    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = std::env::temp_dir().join(format!("trellis-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = trust_roots(Some(&empty), "TRELLIS_CONTROL_PLANE_CA").unwrap_err();
        assert!(err.starts_with("TRELLIS_CONTROL_PLANE_CA ") && err.ends_with("holds no certificate"), "{err}");
        let missing = trust_roots(Some(&dir.join("missing.pem")), "X").unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
