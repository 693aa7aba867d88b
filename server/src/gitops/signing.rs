//! Verified commits: with a list of allowed SSH signing keys, a commit is judged only if it
//! carries a valid SSH signature (git's `gpg.format = ssh`, namespace `git`) by one of them.
//! Anything else is rejected like an invalid policy, with the reason.

use git2::{Oid, Repository};
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The keys whose signatures make a commit acceptable, each with who it belongs to.
#[derive(Debug)]
pub struct Signers {
    keys: Vec<(String, PublicKey)>,
}

impl Signers {
    /// Reads git's allowed-signers format (`principal[,…] [options] ssh-ed25519 AAAA… [comment]`)
    /// or authorized_keys lines (`ssh-ed25519 AAAA… comment`); `#` starts a comment.
    pub fn parse(text: &str) -> Result<Signers, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) =
                words.iter().position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
            else {
                return Err(format!("line {n}: no key type (ssh-ed25519 …)"));
            };
            let openssh = words[at..].join(" ");
            let key = PublicKey::from_openssh(&openssh).map_err(|e| format!("line {n}: {e}"))?;
            let principal = match at {
                0 => key.comment().to_string(),
                _ => words[0].to_string(),
            };
            keys.push((principal, key));
        }
        if keys.is_empty() {
            return Err("no keys: list at least one allowed signer".into());
        }
        Ok(Signers { keys })
    }

    /// Who signed the commit, or why it is not acceptable.
    pub fn verify(&self, repo: &Repository, oid: Oid) -> Result<String, String> {
        let (signature, signed) = repo
            .extract_signature(&oid, None)
            .map_err(|_| "the commit is not signed; sign it with an allowed SSH key (git commit -S)".to_string())?;
        let signature = std::str::from_utf8(&signature).map_err(|_| "the commit signature is not text".to_string())?;
        if !signature.trim_start().starts_with("-----BEGIN SSH SIGNATURE-----") {
            return Err("the commit is signed with GPG or X.509; only SSH signatures are accepted".into());
        }
        let sig = SshSig::from_pem(signature).map_err(|e| format!("the commit signature does not read: {e}"))?;
        let Some((who, key)) = self.keys.iter().find(|(_, k)| k.key_data() == sig.public_key()) else {
            let fingerprint = PublicKey::from(sig.public_key().clone()).fingerprint(HashAlg::Sha256);
            return Err(format!("the commit is signed by {fingerprint}, which is not an allowed signer"));
        };
        key.verify("git", &signed, &sig)
            .map_err(|_| format!("the signature by {who} does not match the commit: it was altered after signing"))?;
        Ok(who.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Signers;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHvPA2C3r7xzsqJ7hA8kQ2Gk4l3w6fCz8Q7P1Yc8Xw9m";

    #[test]
    fn allowed_signers_and_authorized_keys_lines_read_with_their_principal() {
        let s = Signers::parse(&format!("# team\nann@example.com {KEY}\n{KEY} bob@laptop\n")).unwrap();
        let who: Vec<&str> = s.keys.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(who, vec!["ann@example.com", "bob@laptop"]);
        assert!(Signers::parse("ann nothing-here").unwrap_err().contains("line 1"));
        assert!(Signers::parse("# empty\n").unwrap_err().contains("no keys"));
    }
}
