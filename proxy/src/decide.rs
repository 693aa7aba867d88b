//! The proxy's decisions, as plain functions over plain data, tested without a runtime: which
//! rule and version a request takes ([`split`]), which endpoint an attempt goes to
//! ([`balance`]), when an endpoint is ejected ([`outlier`]), whether a retry fits the budget
//! ([`budget`]), who may call ([`access`]) and how often ([`ratelimit`]). The layers in `stack` carry them out.

pub mod access;
pub mod balance;
pub mod budget;
pub mod outlier;
pub mod ratelimit;
pub mod split;
