//! Email addresses, parsed once at the edge with lettre's RFC 5321 rules.

use std::str::FromStr;

use crate::http::error::{ApiError, ApiResult};

/// A syntactically valid, lower-cased email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses `raw`; the error names `field`.
    pub fn parse(field: &str, raw: &str) -> ApiResult<EmailAddress> {
        Self::try_parse(raw).map_err(|reason| ApiError::invalid(field, reason))
    }

    /// Parses `raw`, or says why it is not an address.
    pub fn try_parse(raw: &str) -> Result<EmailAddress, String> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("email is required".into());
        }
        if !s.contains('@') {
            return Err(format!("{s:?} is not an email address: it has no @"));
        }
        if s.len() > 254 {
            return Err("email must be at most 254 characters".into());
        }
        let (_, domain) = s.rsplit_once('@').unwrap_or_default();
        if !domain.contains('.') && domain != "localhost" {
            return Err(format!("{s:?} is not an email address: the domain has no dot"));
        }
        lettre::Address::from_str(&s).map_err(|e| format!("{s:?} is not an email address: {e}"))?;
        Ok(EmailAddress(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn addresses_are_lower_cased_and_checked() {
        assert_eq!(EmailAddress::try_parse(" Ann@School.ORG ").unwrap().as_str(), "ann@school.org");
        assert!(EmailAddress::try_parse("ann.school.org").unwrap_err().contains("no @"));
        assert!(EmailAddress::try_parse("ann@school").is_err());
        assert!(EmailAddress::try_parse("a b@school.org").is_err());
        assert!(EmailAddress::try_parse("").is_err());
    }
}
