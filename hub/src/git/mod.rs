//! Git sources: fetching repositories into the hub's cache ([`fetch`], network and disk),
//! reading commits from that cache and checking them out for rendering ([`tree`], disk),
//! credentials that never show themselves ([`credentials`], pure) and `insteadOf` URL
//! rewrites ([`rewrite`], pure). Scheduling fetches and storing credentials are not its job.

pub mod credentials;
pub mod fetch;
pub mod rewrite;
pub mod tree;

pub use credentials::{Credentials, redact_url};
pub use fetch::{FetchError, FetchLimits, FetchOptions, Fetcher, Transport};
pub use rewrite::{Rewrite, Rewrites};
pub use tree::{CachedRepository, CheckoutStats, TreeError};
