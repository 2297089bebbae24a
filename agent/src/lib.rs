//! The Flotilla agent: verifies signed desired state and applies it to the cluster it runs
//! in. Cluster credentials never leave this process.

pub mod apply;
pub mod changeset;
pub mod cli;
pub mod diff;
pub mod discovery;
pub mod drift;
pub mod engine;
pub mod health;
pub mod identity;
pub mod inventory;
pub mod object;
pub mod oneshot;
pub mod order;
pub mod policy;
pub mod prune;
pub mod run;
pub mod store;
pub mod telemetry;
pub mod verify;
