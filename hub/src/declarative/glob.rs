//! Pattern matching for the declarative model: repository paths as the Git generators match
//! them (Go's `path.Match`, plus `**` for the file generator) and the `*` wildcards of an
//! AppProject's allow lists. Pure string logic; it must not touch a file system.

/// How `**` is read in a path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoubleStar {
    /// `**` is the same as `*`: one path segment (Go's `path.Match`, the directory generator).
    SameAsStar,
    /// A `**` segment matches zero or more whole segments (the file generator).
    AnySegments,
}

/// Whether `path` (slash-separated, no leading slash) matches `pattern`. `*` matches any run
/// of characters within one segment, `?` one character, `[a-z]`/`[^a]` a class, `\` escapes.
pub fn path_matches(pattern: &str, path: &str, double_star: DoubleStar) -> bool {
    let pattern: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segments_match(&pattern, &path, double_star)
}

fn segments_match(pattern: &[&str], path: &[&str], double_star: DoubleStar) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) if double_star == DoubleStar::AnySegments => {
            (0..=path.len()).any(|skip| segments_match(rest, &path[skip..], double_star))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                segment_matches(first, segment) && segments_match(rest, path_rest, double_star)
            }
            None => false,
        },
    }
}

/// One segment against one segment pattern (no `/` in either).
fn segment_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    chars_match(&pattern, &text)
}

fn chars_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|skip| chars_match(&pattern[1..], &text[skip..])),
        Some('?') => !text.is_empty() && chars_match(&pattern[1..], &text[1..]),
        Some('[') => {
            let Some(&c) = text.first() else {
                return false;
            };
            match class_match(&pattern[1..], c) {
                Some((matched, used)) => matched && chars_match(&pattern[1 + used..], &text[1..]),
                // An unterminated class is a literal `[`.
                None => c == '[' && chars_match(&pattern[1..], &text[1..]),
            }
        }
        Some('\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && chars_match(&pattern[2..], &text[1..])
        }
        Some(&p) => text.first() == Some(&p) && chars_match(&pattern[1..], &text[1..]),
    }
}

/// Matches `c` against the class starting after `[`; returns (matched, characters used
/// including the closing `]`), or `None` when the class is not closed.
fn class_match(class: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negated = matches!(class.first(), Some('^' | '!'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < class.len() {
        if class[i] == ']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        let mut low = class[i];
        if low == '\\' && i + 1 < class.len() {
            i += 1;
            low = class[i];
        }
        let mut high = low;
        if i + 2 < class.len() && class[i + 1] == '-' && class[i + 2] != ']' {
            high = class[i + 2];
            i += 2;
        }
        if low <= c && c <= high {
            matched = true;
        }
        i += 1;
    }
    None
}

/// Argo CD's project wildcards: `*` matches any run of characters (including `/`), `?` one.
pub fn wildcard_matches(pattern: &str, text: &str) -> bool {
    fn go(pattern: &[char], text: &[char]) -> bool {
        match pattern.first() {
            None => text.is_empty(),
            Some('*') => (0..=text.len()).any(|skip| go(&pattern[1..], &text[skip..])),
            Some('?') => !text.is_empty() && go(&pattern[1..], &text[1..]),
            Some(&p) => text.first() == Some(&p) && go(&pattern[1..], &text[1..]),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    go(&pattern, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, path: &str, double_star: DoubleStar, expected: bool) {
        assert_eq!(
            path_matches(pattern, path, double_star),
            expected,
            "{pattern} ~ {path} ({double_star:?})"
        );
    }

    #[test]
    fn star_stays_within_a_segment() {
        check("add-ons/*", "add-ons/grafana", DoubleStar::SameAsStar, true);
        check(
            "add-ons/*",
            "add-ons/grafana/x",
            DoubleStar::SameAsStar,
            false,
        );
        check("add-ons/*", "add-ons", DoubleStar::SameAsStar, false);
        check("*", "apps", DoubleStar::SameAsStar, true);
        check("a/**", "a/b", DoubleStar::SameAsStar, true);
        check("a/**", "a/b/c", DoubleStar::SameAsStar, false);
    }

    #[test]
    fn classes_and_escapes() {
        check("d/[f|g]", "d/f", DoubleStar::SameAsStar, true);
        check("d/[f|g]", "d/e", DoubleStar::SameAsStar, false);
        check("d/[^f]", "d/e", DoubleStar::SameAsStar, true);
        check("v[0-9].?", "v1.x", DoubleStar::SameAsStar, true);
        check("a\\*", "a*", DoubleStar::SameAsStar, true);
        check("a\\*", "ab", DoubleStar::SameAsStar, false);
    }

    #[test]
    fn double_star_matches_any_depth_for_files() {
        check(
            "**/config.json",
            "config.json",
            DoubleStar::AnySegments,
            true,
        );
        check(
            "cluster-config/**/config.json",
            "cluster-config/engineering/dev/config.json",
            DoubleStar::AnySegments,
            true,
        );
        check(
            "cluster-config/*/dev/config.json",
            "cluster-config/engineering/prod/config.json",
            DoubleStar::AnySegments,
            false,
        );
        check("a/*.yaml", "a/b/c.yaml", DoubleStar::AnySegments, false);
    }

    #[test]
    fn project_wildcards_cross_slashes() {
        assert!(wildcard_matches("*", "https://github.com/a/b.git"));
        assert!(wildcard_matches(
            "https://github.com/org/*",
            "https://github.com/org/x/y.git"
        ));
        assert!(!wildcard_matches(
            "https://github.com/org/*",
            "https://gitlab.com/org/x"
        ));
        assert!(wildcard_matches("team-?", "team-a"));
    }
}
