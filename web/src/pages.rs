//! One module per dashboard page.

pub mod overview;
pub mod policy;
