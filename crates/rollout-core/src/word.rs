//! One spelling for each value a person writes.
//!
//! A strategy, an `order` and a `failure_action` are written in Compose
//! files, on the command line, in JSON events and in messages. Each value
//! has one spelling, given here once ([`Word::as_str`]) and listed once
//! ([`Word::ALL`]): `FromStr` and `Display` follow it, the Compose loader
//! parses with it, and the command line offers the same list (clap takes
//! it from [`Word::spellings`], so `--help` and its errors show it).

/// A value with one spelling, from a short closed list.
pub trait Word: Copy + Sized + 'static {
    /// Every value, in the order they are listed to a person.
    const ALL: &'static [Self];

    /// The one spelling of this value.
    fn as_str(self) -> &'static str;

    /// The spellings of [`Word::ALL`], in order.
    fn spellings() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|w| w.as_str())
    }

    /// The value spelled `s` exactly (spellings are case-sensitive, as
    /// Compose's and Swarm's are).
    fn from_spelling(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|w| w.as_str() == s)
    }

    /// The value spelled `s`, or an error that lists the spellings.
    fn parse_word(s: &str) -> Result<Self, UnknownWord> {
        Self::from_spelling(s).ok_or_else(|| UnknownWord {
            found: s.to_string(),
            accepted: Self::spellings().collect(),
        })
    }
}

/// A spelling that names no value of the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {}, found {found:?}", either(accepted))]
pub struct UnknownWord {
    /// What was written.
    pub found: String,
    /// Every spelling accepted, in order.
    pub accepted: Vec<&'static str>,
}

/// `a, b or c`: the alternatives, for a message.
pub fn either(words: &[&str]) -> String {
    joined(words, "or")
}

/// `a, b and c`: every one, for a message.
pub fn each(words: &[&str]) -> String {
    joined(words, "and")
}

fn joined(words: &[&str], last: &str) -> String {
    match words {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., tail] => format!("{} {last} {tail}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_sentences() {
        assert_eq!(either(&["a"]), "a");
        assert_eq!(either(&["a", "b"]), "a or b");
        assert_eq!(either(&["a", "b", "c"]), "a, b or c");
        assert_eq!(each(&["a", "b", "c"]), "a, b and c");
        assert_eq!(each(&[]), "");
    }
}
