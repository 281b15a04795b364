//! Matchmaking preferences (`join`) and their validation.
//!
//! Interests are normalized (trimmed, lowercased, deduplicated keeping the first
//! occurrence) before they are checked, so `[" Music", "music"]` is one interest.

use crate::limits::{MAX_INTEREST_CHARS, MAX_INTERESTS};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of chat a session wants. Video and text users are never paired together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Camera and microphone, peer to peer.
    Video,
    /// Text only: no media is negotiated.
    Text,
}

impl Mode {
    /// Both modes, in a fixed order (handy for per-mode tables).
    pub const ALL: [Mode; 2] = [Mode::Video, Mode::Text];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Video => "video",
            Mode::Text => "text",
        }
    }
}

/// The fields of a `join` message.
///
/// Values that came off the wire are only trustworthy after [`Preferences::normalize`];
/// [`crate::codec::decode_client`] does that for every `join` it returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// Video or text.
    pub mode: Mode,
    /// Topics to match on: 0..=10, each 1..=32 characters, lowercase, unique.
    #[serde(default)]
    pub interests: Vec<String>,
    /// ISO 3166-1 alpha-2 code (uppercase after normalization), or none.
    #[serde(default)]
    pub country: Option<String>,
    /// Only pair with someone of the same country (needs `country`).
    #[serde(default)]
    pub same_country: bool,
}

/// Why a set of preferences was refused (`invalid_preferences`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefError {
    /// More than [`MAX_INTERESTS`] distinct interests.
    TooManyInterests(usize),
    /// An interest that is empty after trimming.
    EmptyInterest,
    /// An interest longer than [`MAX_INTEREST_CHARS`] characters.
    InterestTooLong(String),
    /// An interest containing a control character.
    InterestControlChar,
    /// A country that is not an assigned ISO 3166-1 alpha-2 code.
    UnknownCountry(String),
    /// `same_country` without a `country` to compare with.
    SameCountryWithoutCountry,
}

impl fmt::Display for PrefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefError::TooManyInterests(n) => {
                write!(f, "at most {MAX_INTERESTS} interests are allowed, got {n}")
            }
            PrefError::EmptyInterest => f.write_str("an interest is empty"),
            PrefError::InterestTooLong(s) => write!(
                f,
                "interest \"{}…\" is longer than {MAX_INTEREST_CHARS} characters",
                s.chars().take(MAX_INTEREST_CHARS).collect::<String>()
            ),
            PrefError::InterestControlChar => f.write_str("an interest contains a control character"),
            PrefError::UnknownCountry(c) => {
                write!(f, "country \"{}\" is not an ISO 3166-1 alpha-2 code", c.chars().take(8).collect::<String>())
            }
            PrefError::SameCountryWithoutCountry => f.write_str("same_country needs a country"),
        }
    }
}

impl std::error::Error for PrefError {}

impl Preferences {
    /// Preferences with no interests and no country.
    pub fn new(mode: Mode) -> Self {
        Self { mode, interests: Vec::new(), country: None, same_country: false }
    }

    /// Trims, lowercases and deduplicates interests, uppercases the country, and
    /// checks every limit. Idempotent.
    pub fn normalize(self) -> Result<Self, PrefError> {
        let interests = normalize_interests(self.interests)?;
        let country = match self.country {
            None => None,
            Some(c) => Some(normalize_country(&c).ok_or(PrefError::UnknownCountry(c))?),
        };
        if self.same_country && country.is_none() {
            return Err(PrefError::SameCountryWithoutCountry);
        }
        Ok(Self { mode: self.mode, interests, country, same_country: self.same_country })
    }
}

/// Normalizes one interest as typed by a user: trimmed and lowercased.
/// Returns an error when it would be refused in a `join`.
pub fn normalize_interest(raw: &str) -> Result<String, PrefError> {
    let s = raw.trim().to_lowercase();
    if s.is_empty() {
        return Err(PrefError::EmptyInterest);
    }
    if s.chars().any(char::is_control) {
        return Err(PrefError::InterestControlChar);
    }
    if s.chars().count() > MAX_INTEREST_CHARS {
        return Err(PrefError::InterestTooLong(s));
    }
    Ok(s)
}

fn normalize_interests(raw: Vec<String>) -> Result<Vec<String>, PrefError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len().min(MAX_INTERESTS));
    for item in &raw {
        let s = normalize_interest(item)?;
        if !out.contains(&s) {
            if out.len() == MAX_INTERESTS {
                return Err(PrefError::TooManyInterests(count_distinct(&raw)));
            }
            out.push(s);
        }
    }
    Ok(out)
}

fn count_distinct(raw: &[String]) -> usize {
    let mut seen: Vec<String> = raw.iter().map(|s| s.trim().to_lowercase()).collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

/// Uppercases a country code and checks it is an assigned ISO 3166-1 alpha-2 code.
pub fn normalize_country(raw: &str) -> Option<String> {
    let upper = raw.trim().to_ascii_uppercase();
    is_country_code(&upper).then_some(upper)
}

/// Whether `code` (uppercase) is an officially assigned ISO 3166-1 alpha-2 code.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && COUNTRY_CODES.split(' ').any(|c| c == code)
}

/// Every officially assigned ISO 3166-1 alpha-2 code, in order.
pub fn country_codes() -> impl Iterator<Item = &'static str> {
    COUNTRY_CODES.split(' ')
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, space separated.
const COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP \
KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(interests: &[&str]) -> Preferences {
        Preferences { interests: interests.iter().map(|s| s.to_string()).collect(), ..Preferences::new(Mode::Video) }
    }

    #[test]
    fn there_are_249_sorted_unique_country_codes() {
        let codes: Vec<_> = country_codes().collect();
        assert_eq!(codes.len(), 249);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert!(codes.iter().all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn interests_are_trimmed_lowercased_and_deduplicated_in_order() {
        let p = prefs(&["  Music ", "music", "RUST", "Music"]).normalize().unwrap();
        assert_eq!(p.interests, vec!["music", "rust"]);
    }

    #[test]
    fn duplicates_do_not_count_toward_the_limit() {
        let mut many: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
        many.push("T0".into());
        let p = Preferences { interests: many, ..Preferences::new(Mode::Text) };
        assert_eq!(p.normalize().unwrap().interests.len(), 10);
    }

    #[test]
    fn eleven_distinct_interests_are_refused() {
        let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        let p = Preferences { interests: many, ..Preferences::new(Mode::Text) };
        assert_eq!(p.normalize(), Err(PrefError::TooManyInterests(11)));
    }

    #[test]
    fn empty_long_and_control_interests_are_refused() {
        assert_eq!(prefs(&["   "]).normalize(), Err(PrefError::EmptyInterest));
        assert!(matches!(prefs(&[&"x".repeat(33)]).normalize(), Err(PrefError::InterestTooLong(_))));
        assert_eq!(prefs(&["a\u{7}b"]).normalize(), Err(PrefError::InterestControlChar));
        // 32 multi-byte characters are fine: the limit counts characters, not bytes.
        assert!(prefs(&[&"é".repeat(32)]).normalize().is_ok());
    }

    #[test]
    fn countries_are_uppercased_and_checked() {
        let p = Preferences { country: Some("de".into()), same_country: true, ..Preferences::new(Mode::Video) };
        assert_eq!(p.normalize().unwrap().country.as_deref(), Some("DE"));
        for bad in ["XX", "D", "DEU", "", "zz", "1A"] {
            let p = Preferences { country: Some(bad.into()), ..Preferences::new(Mode::Video) };
            assert_eq!(p.normalize(), Err(PrefError::UnknownCountry(bad.into())), "{bad}");
        }
    }

    #[test]
    fn same_country_needs_a_country() {
        let p = Preferences { same_country: true, ..Preferences::new(Mode::Video) };
        assert_eq!(p.normalize(), Err(PrefError::SameCountryWithoutCountry));
    }

    #[test]
    fn normalize_is_idempotent() {
        let once = prefs(&[" A", "b "]).normalize().unwrap();
        assert_eq!(once.clone().normalize().unwrap(), once);
    }
}
