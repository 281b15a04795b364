//! Rules for the interest chips: the same normalization and limits the server applies.

use protocol::limits::MAX_INTERESTS;
use protocol::prefs::{PrefError, normalize_interest};

/// The result of typing an interest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Added {
    /// Normalized and appended.
    Added(String),
    /// Already in the list (after normalization): nothing changed.
    Duplicate(String),
}

/// Normalizes `raw` and appends it to `list` unless it is a duplicate.
/// Errors carry a message fit to show next to the input.
pub fn add(list: &mut Vec<String>, raw: &str) -> Result<Added, String> {
    let interest = normalize_interest(raw).map_err(|e| match e {
        PrefError::EmptyInterest => "Type an interest first.".to_string(),
        PrefError::InterestTooLong(_) => {
            format!("Keep it under {} characters.", protocol::limits::MAX_INTEREST_CHARS + 1)
        }
        PrefError::InterestControlChar => "That interest has characters we can't use.".to_string(),
        other => other.to_string(),
    })?;
    if list.contains(&interest) {
        return Ok(Added::Duplicate(interest));
    }
    if list.len() >= MAX_INTERESTS {
        return Err(format!("That's the maximum of {MAX_INTERESTS} interests."));
    }
    list.push(interest.clone());
    Ok(Added::Added(interest))
}

/// Adds every comma-separated piece of `raw` (what a paste or a typed comma gives).
/// Stops at the first error, keeping what was added before it.
pub fn add_all(list: &mut Vec<String>, raw: &str) -> Result<(), String> {
    for piece in raw.split(',').filter(|p| !p.trim().is_empty()) {
        add(list, piece)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_normalized_and_skips_duplicates() {
        let mut list = vec![];
        assert_eq!(add(&mut list, "  Music "), Ok(Added::Added("music".into())));
        assert_eq!(add(&mut list, "MUSIC"), Ok(Added::Duplicate("music".into())));
        assert_eq!(list, vec!["music"]);
    }

    #[test]
    fn refuses_empty_long_and_the_eleventh() {
        let mut list = vec![];
        assert!(add(&mut list, "   ").is_err());
        assert!(add(&mut list, &"x".repeat(33)).is_err());
        add_all(&mut list, "a,b,c,d,e,f,g,h,i,j").unwrap();
        assert_eq!(list.len(), 10);
        assert!(add(&mut list, "k").unwrap_err().contains("maximum"));
        assert_eq!(add(&mut list, "a"), Ok(Added::Duplicate("a".into())));
    }
}
