//! `SiteId`: the one tenant identifier (`siteId` in the document API, `tenantId` in FHIR).

use std::fmt;

/// Site ids that can never name a tenant.
pub const RESERVED_SITE_IDS: &[&str] = &["global"];

/// The site every single-tenant deployment uses, and the fallback target of admins.
pub const DEFAULT_SITE: &str = "default";

const MAX_LEN: usize = 128;

/// A validated site (tenant) id: `^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`, not reserved.
///
/// It cannot contain `#`, `/`, whitespace or control characters, so `<siteId>#` key prefixes
/// of two tenants never overlap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(String);

/// Why a string is not a site id; the message is meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteIdError {
    #[error("site id is empty")]
    Empty,
    #[error("site id is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("site id must start with a letter or digit")]
    BadStart,
    #[error("site id may contain only letters, digits and . _ @ + - (found {0:?})")]
    BadChar(char),
    #[error("site id '{0}' is reserved")]
    Reserved(String),
}

impl SiteId {
    /// Parses and validates a site id.
    pub fn parse(s: &str) -> Result<Self, SiteIdError> {
        let first = s.chars().next().ok_or(SiteIdError::Empty)?;
        if s.len() > MAX_LEN {
            return Err(SiteIdError::TooLong);
        }
        if !first.is_ascii_alphanumeric() {
            return Err(SiteIdError::BadStart);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-')))
        {
            return Err(SiteIdError::BadChar(c));
        }
        if RESERVED_SITE_IDS.contains(&s) {
            return Err(SiteIdError::Reserved(s.to_owned()));
        }
        Ok(SiteId(s.to_owned()))
    }

    /// The `default` site.
    pub fn default_site() -> Self {
        SiteId(DEFAULT_SITE.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_SITE
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({})", self.0)
    }
}

impl std::str::FromStr for SiteId {
    type Err = SiteIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteId::parse(s)
    }
}

impl serde::Serialize for SiteId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SiteId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SiteId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in [
            "default",
            "a",
            "A9",
            "marketing",
            "jane.doe+work@example.com",
            "x-y-z",
            "us-east-1_AbC_Google",
            "team_read",
            &"a".repeat(128),
            "0",
        ] {
            assert_eq!(SiteId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        let cases: &[(&str, SiteIdError)] = &[
            ("", SiteIdError::Empty),
            (&"a".repeat(129), SiteIdError::TooLong),
            ("-a", SiteIdError::BadStart),
            (".a", SiteIdError::BadStart),
            ("@a", SiteIdError::BadStart),
            ("a#b", SiteIdError::BadChar('#')),
            ("a/b", SiteIdError::BadChar('/')),
            ("a b", SiteIdError::BadChar(' ')),
            ("a\nb", SiteIdError::BadChar('\n')),
            ("a\u{0}", SiteIdError::BadChar('\u{0}')),
            ("_a", SiteIdError::BadStart),
            ("caf\u{e9}", SiteIdError::BadChar('\u{e9}')),
            ("global", SiteIdError::Reserved("global".into())),
        ];
        for (input, want) in cases {
            assert_eq!(SiteId::parse(input).unwrap_err(), *want, "input {input:?}");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let s: SiteId = serde_json::from_str("\"finance\"").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"finance\"");
        assert!(serde_json::from_str::<SiteId>("\"a#b\"").is_err());
    }
}
