//! ingest: the handler behind the load balancer.
//!
//! - [`config`]: the environment, read once into a typed [`IngestConfig`].
//! - [`auth`]: basic, bearer, custom-header and OAuth2-token authentication, compared in
//!   constant time.
//! - [`oauth2`]: SparkPost's OAuth2 mode: the token endpoint and its stateless signed tokens.
//! - [`handler`]: one HTTP request in, one response out: authenticate, decode, validate,
//!   quarantine what is malformed, enqueue the rest, answer 200 only once it is durable.

pub mod auth;
pub mod config;
pub mod handler;
pub mod oauth2;

pub use config::{ConfigError, IngestConfig};
pub use handler::Ingest;
