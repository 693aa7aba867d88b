use super::*;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::client::TlsStream as ClientStream;

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    roots: Arc<rustls::RootCertStore>,
}

/// A server certificate for `server.test`, and a client trusting it; with `mutual`, the server
/// asks for a client certificate from the same CA.
fn pki(mutual: bool) -> Pki {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        (vec![cert.der().clone()], PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let roots = Arc::new(roots);
    // TLS 1.2 too, as the admission listener allows (its callers are Kubernetes API servers).
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap();
    let builder = if mutual {
        builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .unwrap(),
        )
    } else {
        builder.with_no_client_auth()
    };
    let (chain, key) = leaf("server.test");
    let mut server = builder.with_single_cert(chain, key).unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots.clone());
    let mut client = if mutual {
        let (chain, key) = leaf("client.test");
        client.with_client_auth_cert(chain, key).unwrap()
    } else {
        client.with_no_client_auth()
    };
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Pki { server: Arc::new(server), client: Arc::new(client), roots }
}

/// Both ends of a handshake over an in-memory pipe of `capacity` bytes each way.
async fn handshake(
    pki: &Pki,
    capacity: usize,
) -> (io::Result<ClientStream<DuplexStream>>, io::Result<Tls<DuplexStream>>) {
    let (near, far) = tokio::io::duplex(capacity);
    let connector = tokio_rustls::TlsConnector::from(pki.client.clone());
    let name = ServerName::try_from("server.test").unwrap();
    tokio::join!(connector.connect(name, near), accept(pki.server.clone(), far))
}

async fn connect(pki: &Pki, capacity: usize) -> (ClientStream<DuplexStream>, Tls<DuplexStream>) {
    let (client, server) = handshake(pki, capacity).await;
    (client.unwrap(), server.unwrap())
}

/// Holds no buffer: what an idle connection should cost beyond rustls' own state.
fn holds_nothing(tls: &Tls<DuplexStream>) -> bool {
    tls.incoming.capacity() == 0 && tls.plaintext.capacity() == 0 && tls.outgoing.capacity() == 0
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn bytes_cross_both_ways_and_an_idle_connection_holds_no_buffer() {
    let pki = pki(false);
    let (mut client, mut server) = connect(&pki, 64 * 1024).await;
    assert_eq!(server.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(server.peer_certificates().is_none());
    assert!(holds_nothing(&server), "after the handshake");

    client.write_all(b"hello\n").await.unwrap();
    client.flush().await.unwrap();
    let mut line = [0u8; 6];
    server.read_exact(&mut line).await.unwrap();
    assert_eq!(&line, b"hello\n");
    server.write_all(b"hi\n").await.unwrap();
    server.flush().await.unwrap();
    let mut answer = [0u8; 3];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"hi\n");
    assert!(holds_nothing(&server), "after an exchange");
}

#[tokio::test]
async fn a_tls_1_2_client_is_served_too() {
    let pki = pki(false);
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let pki = Pki { client: Arc::new(client), ..pki };
    let (mut client, mut server) = connect(&pki, 4 * 1024).await;
    assert_eq!(client.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    let body = pattern(50_000);
    let ((), got) = tokio::join!(
        async {
            client.write_all(&body).await.unwrap();
            client.flush().await.unwrap();
        },
        async {
            let mut got = vec![0u8; body.len()];
            server.read_exact(&mut got).await.unwrap();
            got
        }
    );
    assert!(got == body, "the server read other bytes than were sent");
    assert!(holds_nothing(&server));
}

#[tokio::test]
async fn large_writes_through_a_narrow_pipe_arrive_whole_and_in_order() {
    let pki = pki(false);
    // A pipe far narrower than one write, so both sides wait on the other many times.
    let (client, server) = connect(&pki, 4 * 1024).await;
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = pattern(300_000);
    let down = pattern(200_001);
    let (sent_up, sent_down) = (up.clone(), down.clone());
    let uploading = tokio::spawn(async move {
        client_write.write_all(&sent_up).await.unwrap();
        client_write.shutdown().await.unwrap();
    });
    let downloading = tokio::spawn(async move {
        server_write.write_all(&sent_down).await.unwrap();
        server_write.shutdown().await.unwrap();
    });
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    let (read_up, read_down) =
        tokio::join!(server_read.read_to_end(&mut got_up), client_read.read_to_end(&mut got_down));
    read_up.unwrap();
    read_down.unwrap();
    uploading.await.unwrap();
    downloading.await.unwrap();
    assert!(got_up == up, "the server read {} of {} bytes, or out of order", got_up.len(), up.len());
    assert!(got_down == down, "the client read {} of {} bytes, or out of order", got_down.len(), down.len());
}

#[tokio::test]
async fn a_close_notify_ends_the_read_cleanly_and_the_servers_reaches_the_client() {
    let pki = pki(false);
    let (mut client, mut server) = connect(&pki, 64 * 1024).await;
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
    server.write_all(b"goodbye").await.unwrap();
    server.shutdown().await.unwrap();
    assert!(server.write_all(b"more").await.is_err(), "nothing is written after close_notify");
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"goodbye");
}

#[tokio::test]
async fn a_peer_gone_without_close_notify_is_an_error_not_a_clean_end() {
    let pki = pki(false);
    let (client, mut server) = connect(&pki, 64 * 1024).await;
    drop(client);
    let mut got = Vec::new();
    let e = server.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn a_key_update_from_the_client_is_followed_both_ways() {
    let pki = pki(false);
    let (mut client, mut server) = connect(&pki, 64 * 1024).await;
    for round in 0..3 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        let message = format!("round {round}");
        client.write_all(message.as_bytes()).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; message.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message.as_bytes());
        server.write_all(message.as_bytes()).await.unwrap();
        server.flush().await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}

#[tokio::test]
async fn a_client_certificate_is_verified_and_shown() {
    let pki = pki(true);
    let (_client, server) = connect(&pki, 64 * 1024).await;
    let leaf = server.peer_certificates().and_then(|c| c.first()).expect("the client's certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let names: Vec<String> =
        cert.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["DNSName(client.test)"]);

    // A client without a certificate is refused, and told why by an alert.
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(pki.roots.clone())
        .with_no_client_auth();
    let pki = Pki { client: Arc::new(anonymous), ..pki };
    let (client, server) = handshake(&pki, 64 * 1024).await;
    assert_eq!(server.err().expect("refused").kind(), io::ErrorKind::InvalidData);
    // TLS 1.3: the client finishes its side of the handshake before the server judges it.
    let mut client = client.unwrap();
    let e = client.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_is_refused_with_an_alert() {
    let pki = pki(false);
    let (mut near, far) = tokio::io::duplex(64 * 1024);
    let accepting = tokio::spawn(accept(pki.server.clone(), far));
    near.write_all(b"GET / HTTP/1.1\r\nhost: server.test\r\n\r\n").await.unwrap();
    let e = accepting.await.unwrap().err().expect("refused");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let mut answer = Vec::new();
    near.read_to_end(&mut answer).await.unwrap();
    // A TLS alert record: content type 21.
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
}
