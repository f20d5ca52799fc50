//! ingest: the handler behind the load balancer.
//!
//! - [`config`]: the environment, read once into a typed [`IngestConfig`].
//! - [`auth`]: basic, bearer and custom-header authentication, compared in constant time.
//! - [`handler`]: one HTTP request in, one response out: authenticate, decode, validate,
//!   quarantine what is malformed, enqueue the rest, answer 200 only once it is durable.

pub mod auth;
pub mod config;
pub mod handler;

pub use config::{ConfigError, IngestConfig};
pub use handler::Ingest;
