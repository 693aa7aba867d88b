//! One module per dashboard page.

pub mod fleet;
pub mod overview;
pub mod policy;
pub mod topology;
pub mod traffic;
