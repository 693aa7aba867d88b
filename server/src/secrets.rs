//! The secrets policies name: environment variables of the control plane (a Notification's
//! `secretFrom`, `urlFrom`), or values the process itself provides (`trellis demo`, for the
//! receiver it runs). A policy holds names, never values.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// Values provided by the process, looked up before the environment.
static PROVIDED: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();

/// Makes `name` a secret this process has, as if it were set in its environment.
pub fn provide(name: &str, value: &str) {
    PROVIDED.get_or_init(Default::default).locked().insert(name.to_string(), value.to_string());
}

/// The secret `name`: provided by the process, or its environment variable; never empty.
pub fn get(name: &str) -> Option<String> {
    let provided = PROVIDED.get().and_then(|p| p.locked().get(name).cloned());
    provided.or_else(|| std::env::var(name).ok()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_provided_value_is_found_before_the_environment_and_an_empty_one_is_none() {
        assert_eq!(super::get("PATH"), std::env::var("PATH").ok());
        super::provide("PATH", "provided");
        assert_eq!(super::get("PATH").as_deref(), Some("provided"));
        super::provide("TRELLIS_TEST_EMPTY_SECRET", "");
        assert_eq!(super::get("TRELLIS_TEST_EMPTY_SECRET"), None);
    }
}
