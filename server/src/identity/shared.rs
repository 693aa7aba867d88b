//! One trust anchor for every replica. The anchor and the join secret are kept in the shared
//! database as well as in each replica's data directory: the first replica's are offered, and
//! every later one takes them, so a proxy certified by one replica is trusted by all and a
//! join token made by one is accepted by all. Each replica still makes an issuer of its own.

use super::{Ca, IdentityError, write_private};
use crate::store::{IdentityRow, Store};
use std::path::Path;

/// Makes `dir` hold the anchor the replicas share, then loads the CA from it. An anchor an
/// operator put in `dir` that differs from the shared one is refused, never replaced.
pub async fn load_shared(store: &Store, dir: &Path, trust_domain: &str) -> Result<Ca, String> {
    let files = ["anchor.pem", "anchor.key", "join.key"].map(|f| dir.join(f));
    let brought = files[0].exists() && files[1].exists();
    // Generates what is missing, so there is something to offer.
    Ca::load_or_create(dir, trust_domain).map_err(|e| e.to_string())?;
    let read = |i: usize| std::fs::read_to_string(&files[i]).map_err(|e| format!("{}: {e}", files[i].display()));
    let local = IdentityRow { anchor_pem: read(0)?, anchor_key: read(1)?, join_secret: read(2)? };
    let shared = store.share_identity(trust_domain, &local).await.map_err(|e| e.to_string())?;
    if shared != local {
        if brought && shared.anchor_pem != local.anchor_pem {
            return Err(format!(
                "the trust anchor in {} is not the one the other replicas share (in the database): give every \
                 replica the same anchor.pem and anchor.key, or remove these to take the shared one",
                dir.display()
            ));
        }
        tracing::info!(dir = %dir.display(), "taking the trust anchor the replicas share");
        let write = |i: usize, text: &str| -> Result<(), IdentityError> {
            if i == 0 {
                std::fs::write(&files[i], text)?
            } else {
                write_private(&files[i], text)?
            }
            Ok(())
        };
        for (i, text) in [&shared.anchor_pem, &shared.anchor_key, &shared.join_secret].into_iter().enumerate() {
            write(i, text).map_err(|e| format!("{}: {e}", files[i].display()))?;
        }
    }
    Ca::load_or_create(dir, trust_domain).map_err(|e| e.to_string())
}
