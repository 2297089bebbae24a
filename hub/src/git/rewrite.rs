//! Repository URL rewrites, as git's `url.<base>.insteadOf`: a URL that starts with a rule's
//! prefix has that prefix replaced by the rule's base, and among matching rules the longest
//! prefix wins (ties: the first rule). Air-gapped sites point public URLs at internal
//! mirrors; tests point them at servers on loopback. Pure: no I/O.

use std::borrow::Cow;

/// One rule: URLs starting with `instead_of` are fetched from `base` + the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub base: String,
    pub instead_of: String,
}

/// An ordered set of rewrite rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrites {
    rules: Vec<Rewrite>,
}

impl Rewrites {
    pub fn new(rules: impl IntoIterator<Item = Rewrite>) -> Self {
        Self {
            rules: rules
                .into_iter()
                .filter(|rule| !rule.instead_of.is_empty())
                .collect(),
        }
    }

    /// Adds the rule `instead_of` → `base`.
    pub fn with(mut self, instead_of: &str, base: &str) -> Self {
        if !instead_of.is_empty() {
            self.rules.push(Rewrite {
                base: base.to_owned(),
                instead_of: instead_of.to_owned(),
            });
        }
        self
    }

    /// The URL to fetch for `url`: rewritten by the rule with the longest matching prefix,
    /// or unchanged.
    pub fn apply<'u>(&self, url: &'u str) -> Cow<'u, str> {
        let mut best: Option<&Rewrite> = None;
        for rule in &self.rules {
            if url.starts_with(&rule.instead_of)
                && best.is_none_or(|b| rule.instead_of.len() > b.instead_of.len())
            {
                best = Some(rule);
            }
        }
        match best {
            Some(rule) => Cow::Owned(format!("{}{}", rule.base, &url[rule.instead_of.len()..])),
            None => Cow::Borrowed(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &[(&str, &str)], url: &str, expected: &str) {
        let rewrites = rules
            .iter()
            .fold(Rewrites::default(), |r, (instead_of, base)| {
                r.with(instead_of, base)
            });
        assert_eq!(rewrites.apply(url), expected, "rules {rules:?} on {url}");
    }

    #[test]
    fn longest_prefix_wins() {
        let mirror = [
            ("https://github.com/", "https://mirror.local/gh/"),
            ("https://github.com/acme/", "https://mirror.local/acme/"),
            ("git@github.com:", "https://mirror.local/gh/"),
        ];
        check(&[], "https://github.com/a/b", "https://github.com/a/b");
        check(
            &mirror,
            "https://github.com/x/y.git",
            "https://mirror.local/gh/x/y.git",
        );
        check(
            &mirror,
            "https://github.com/acme/y",
            "https://mirror.local/acme/y",
        );
        check(
            &mirror,
            "git@github.com:acme/y.git",
            "https://mirror.local/gh/acme/y.git",
        );
        check(&mirror, "https://gitlab.com/x/y", "https://gitlab.com/x/y");
        check(&mirror, "http://github.com/x", "http://github.com/x");
        // Prefixes are plain string prefixes, as in git.
        check(
            &mirror,
            "https://github.com/acmecorp/y",
            "https://mirror.local/gh/acmecorp/y",
        );
        // Ties go to the first rule; an empty prefix is ignored.
        check(
            &[("https://a/", "one/"), ("https://a/", "two/")],
            "https://a/r",
            "one/r",
        );
        check(&[("", "nowhere/")], "https://a/r", "https://a/r");
        // A whole-URL rule maps one repository to a local path.
        check(
            &[("https://a/r.git", "/srv/r")],
            "https://a/r.git",
            "/srv/r",
        );
    }
}
