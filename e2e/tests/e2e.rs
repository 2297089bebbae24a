//! End-to-end tests against real Kubernetes clusters started by the harness.
//!
//! One test binary, so every test shares the clusters `make test` started (see
//! `flotilla_e2e::shared`). Each module is one area; each test works in namespaces of its
//! own so tests can run at once.

mod agent_run;
mod apply;
mod browser;
mod chart;
mod dashboard;
mod drift;
mod fixtures;
mod fleet;
mod harness;
mod processes;
mod rbac;
mod realworld;
mod sso;
