//! How an error reads to an operator: one line, the error and then each of its causes
//! that the message before does not already say, so a chain whose messages embed their
//! sources is not printed twice. Pure formatting; binaries print the result.

use std::error::Error;

/// `error: cause: deeper cause`, each cause at most once.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = current.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("bundle is refused: {0}")]
        Embeds(#[source] Inner),
        #[error("read bundle file")]
        Wraps(#[source] Inner),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("state is for cluster \"x\"")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(
            one_line(&Outer::Embeds(Inner)),
            "bundle is refused: state is for cluster \"x\""
        );
        assert_eq!(
            one_line(&Outer::Wraps(Inner)),
            "read bundle file: state is for cluster \"x\""
        );
    }
}
