//! API versions, `MAJOR.MINOR`, and oslo.messaging's rule for when a served
//! version answers a requested one.

use crate::error::{clip, ServiceError, QUOTE_LIMIT};
use crate::protocol::msgpack::Reader;
use std::fmt;
use std::str::FromStr;

/// The version of a service's API, `MAJOR.MINOR` (as oslo.messaging's
/// targets have). A server serving `2.3` answers calls that require `2.0`
/// to `2.3`: the same major, a minor no higher (see [`Version::serves`]).
///
/// ```
/// use zerorpc::Version;
/// let served: Version = "2.3".parse().unwrap();
/// assert!(served.serves(Version::new(2, 0)));
/// assert!(!served.serves(Version::new(2, 4)));
/// assert!(!served.serves(Version::new(1, 0)));
/// assert_eq!(served.to_string(), "2.3");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Changes when the API breaks callers.
    pub major: u32,
    /// Changes when the API grows.
    pub minor: u32,
}

impl Version {
    /// The version of a service that declares none (oslo.messaging's
    /// default).
    pub const DEFAULT: Version = Version::new(1, 0);

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    /// Whether a service at this version answers a call that requires
    /// `wanted`: the same major, and a minor no higher than this one.
    pub fn serves(self, wanted: Version) -> bool {
        self.major == wanted.major && wanted.minor <= self.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a text is not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a version (MAJOR.MINOR, e.g. 2.0): {0:?}")]
pub struct ParseVersionError(String);

impl FromStr for Version {
    type Err = ParseVersionError;

    /// `"2.0"`, or `"2"` for `2.0`.
    fn from_str(s: &str) -> Result<Version, ParseVersionError> {
        let bad = || ParseVersionError(clip(s, QUOTE_LIMIT).into_owned());
        let (major, minor) = s.split_once('.').unwrap_or((s, "0"));
        let number = |t: &str| match t.bytes().all(|b| b.is_ascii_digit()) {
            true => t.parse::<u32>().ok(),
            false => None,
        };
        match (number(major), number(minor)) {
            (Some(major), Some(minor)) => Ok(Version { major, minor }),
            _ => Err(bad()),
        }
    }
}

/// The `UnsupportedVersion` error of a call that requires `wanted` (raw
/// msgpack of the header's `api_version`) from a method whose namespace
/// serves `served`; `None` when it is served.
pub(crate) fn refuse(method: &str, served: Version, wanted: &[u8]) -> Option<ServiceError> {
    let wanted = match Reader::new(wanted).str_or_skip() {
        Ok(Some(text)) => std::str::from_utf8(text).ok().map(str::parse::<Version>),
        _ => None,
    };
    let method = clip(method, QUOTE_LIMIT);
    match wanted {
        Some(Ok(wanted)) if served.serves(wanted) => None,
        Some(Ok(wanted)) => Some(ServiceError::new(
            "UnsupportedVersion",
            format!("{method} is served at version {served}; the call requires {wanted}"),
        )),
        Some(Err(e)) => Some(ServiceError::new("UnsupportedVersion", e.to_string())),
        None => Some(ServiceError::new(
            "UnsupportedVersion",
            "the header's api_version must be a str, MAJOR.MINOR",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::msgpack::write_str;

    fn raw(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn parsing_accepts_major_minor_and_major_alone() {
        assert_eq!("2.1".parse(), Ok(Version::new(2, 1)));
        assert_eq!("3".parse(), Ok(Version::new(3, 0)));
        for bad in ["", "x", "1.", ".1", "1.2.3", "-1.0", "1.+2", " 1.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_oslo_rule() {
        let served = Version::new(2, 3);
        assert!(served.serves(Version::new(2, 3)));
        assert!(served.serves(Version::new(2, 0)));
        assert!(!served.serves(Version::new(2, 4)));
        assert!(!served.serves(Version::new(3, 0)));
        assert!(!served.serves(Version::new(1, 9)));
    }

    #[test]
    fn refusals_name_both_versions() {
        assert!(refuse("control.stop", Version::new(2, 0), &raw("2.0")).is_none());
        let e = refuse("control.stop", Version::new(2, 0), &raw("2.1")).unwrap();
        assert_eq!(e.name, "UnsupportedVersion");
        assert!(
            e.message.contains("control.stop is served at version 2.0"),
            "{}",
            e.message
        );
        assert!(e.message.contains("requires 2.1"), "{}", e.message);
        let e = refuse("add", Version::DEFAULT, &raw("two")).unwrap();
        assert!(e.message.contains("not a version"), "{}", e.message);
        let e = refuse("add", Version::DEFAULT, &[0x02]).unwrap();
        assert!(e.message.contains("must be a str"), "{}", e.message);
    }
}
