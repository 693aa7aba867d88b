//! Git webhooks signed the way GitHub (and Gitea, and GitLab's compatible mode) sign them:
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Checks the signature in constant time; the error says what was wrong, never the secret.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    let header = header.ok_or("missing X-Hub-Signature-256 header")?;
    let digits = header.strip_prefix("sha256=").ok_or("signature must start with sha256=")?;
    let signature = hex::decode(digits).map_err(|_| "signature is not hexadecimal")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "unusable secret")?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| "signature does not match the body")
}

/// The header value for `body`, as a git host would send it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_own_signature_and_refuses_everything_else() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(verify(b"s3cret", body, Some(&good)), Ok(()));
        assert!(verify(b"other", body, Some(&good)).is_err());
        assert!(verify(b"s3cret", b"tampered", Some(&good)).is_err());
        assert_eq!(verify(b"s3cret", body, None), Err("missing X-Hub-Signature-256 header"));
        assert!(verify(b"s3cret", body, Some("sha1=abc")).is_err());
        assert!(verify(b"s3cret", body, Some("sha256=zz")).is_err());
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
