//! One module per dashboard page.

pub mod audit;
pub mod compare;
pub mod deliveries;
pub mod finished;
pub mod fleet;
pub mod login;
pub mod overview;
pub mod policy;
pub mod rollouts;
pub mod topology;
pub mod traffic;
