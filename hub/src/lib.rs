//! The Flotilla hub: turns Git into signed, per-cluster desired state and serves it to
//! agents. It never holds a credential for any cluster and never connects to one.

// The OpenAPI document is one `json!` literal.
#![recursion_limit = "256"]

pub mod agent_api;
pub mod api;
pub mod auth;
pub mod bundle_build;
pub mod cli;
pub mod config;
pub mod config_repo;
pub mod dashboard;
pub mod declarative;
pub mod failpoint;
pub mod fleet;
pub mod git;
pub mod init;
pub mod keygen;
pub mod manifest_files;
pub mod pki;
pub mod poll;
pub mod publish;
pub mod reconcile;
pub mod registration;
pub mod render;
pub mod rounds;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod webhook;
