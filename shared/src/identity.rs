//! A cluster's identity on the agent API: the rules for cluster names and the SPIFFE-style
//! URI that a client certificate carries in its subject alternative name
//! (`spiffe://flotilla.dev/cluster/<name>`).
//!
//! Hub and agent both use it, the hub to issue and read certificates, the agent to ask for
//! one. Pure: no certificate parsing and no I/O here, only names and strings.

use crate::state::is_dns_label;

/// The prefix of every cluster URI; the cluster name follows it.
pub const CLUSTER_URI_PREFIX: &str = "spiffe://flotilla.dev/cluster/";

/// Why a cluster name or a cluster URI is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterNameError {
    #[error(
        "cluster name {0:?} is not a DNS-1123 label (at most 63 of a-z, 0-9 and '-', \
         starting and ending with a letter or digit)"
    )]
    Name(String),
    #[error("URI {0:?} is not a flotilla cluster identity ({CLUSTER_URI_PREFIX}<name>)")]
    Uri(String),
}

/// Checks that `name` can name a cluster: a DNS-1123 label, as Kubernetes and certificate
/// names accept.
pub fn validate_cluster_name(name: &str) -> Result<(), ClusterNameError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(ClusterNameError::Name(name.to_owned()))
    }
}

/// The URI that identifies cluster `name` in a certificate.
pub fn cluster_uri(name: &str) -> Result<String, ClusterNameError> {
    validate_cluster_name(name)?;
    Ok(format!("{CLUSTER_URI_PREFIX}{name}"))
}

/// The cluster a URI names. Invariant: the result is a valid cluster name, so
/// `cluster_uri(cluster_from_uri(uri)?)` gives `uri` back.
pub fn cluster_from_uri(uri: &str) -> Result<&str, ClusterNameError> {
    uri.strip_prefix(CLUSTER_URI_PREFIX)
        .filter(|name| is_dns_label(name))
        .ok_or_else(|| ClusterNameError::Uri(uri.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_name(name: &str, valid: bool) {
        assert_eq!(validate_cluster_name(name).is_ok(), valid, "{name:?}");
    }

    #[test]
    fn cluster_names_are_dns_labels() {
        check_name("east", true);
        check_name("eu-west-1", true);
        check_name("0", true);
        check_name(&"a".repeat(63), true);
        check_name("", false);
        check_name(&"a".repeat(64), false);
        check_name("East", false);
        check_name("-east", false);
        check_name("east-", false);
        check_name("east.1", false);
        check_name("east/1", false);
        check_name("ost-ä", false);
    }

    #[test]
    fn a_refused_name_says_what_is_allowed() {
        let message = validate_cluster_name("East")
            .expect_err("upper case")
            .to_string();
        assert!(message.contains("\"East\""), "{message}");
        assert!(message.contains("DNS-1123 label"), "{message}");
    }

    fn check_uri(uri: &str, expected: Option<&str>) {
        assert_eq!(cluster_from_uri(uri).ok(), expected, "{uri:?}");
    }

    #[test]
    fn cluster_uris_round_trip_and_nothing_else_is_read_as_one() {
        assert_eq!(
            cluster_uri("east").expect("valid"),
            "spiffe://flotilla.dev/cluster/east"
        );
        check_uri("spiffe://flotilla.dev/cluster/east", Some("east"));
        check_uri("spiffe://flotilla.dev/cluster/", None);
        check_uri("spiffe://flotilla.dev/cluster/east/x", None);
        check_uri("spiffe://flotilla.dev/cluster/East", None);
        check_uri("spiffe://example.org/cluster/east", None);
        check_uri("https://flotilla.dev/cluster/east", None);
        check_uri("east", None);
        assert!(cluster_uri("East").is_err());
    }
}
