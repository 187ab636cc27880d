//! Secrets and what guards them: the redacted [`Secret`] string, how a
//! session authenticates ([`Auth`]), randomness for one-time passwords and
//! nonces, and constant-time comparison of what a client proves.

use std::fmt;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(** redacted **)")
    }
}

/// How the session authenticates.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    Password(Secret),
    /// An IAM auth token, sent as a cleartext password inside TLS.
    IamToken(Secret),
}

impl Auth {
    pub(crate) fn secret(&self) -> &Secret {
        match self {
            Self::Password(s) | Self::IamToken(s) => s,
        }
    }

    pub(crate) const fn describe(&self) -> &'static str {
        match self {
            Self::Password(_) => "password",
            Self::IamToken(_) => "iam",
        }
    }
}

/// The system random generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
pub(crate) struct RandomFailed;

impl crate::error::Categorized for RandomFailed {
    fn category(&self) -> crate::error::Category {
        crate::error::Category::Runtime
    }
}

/// `N` bytes from the system's secure random generator.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], RandomFailed> {
    let mut bytes = [0_u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomFailed)?;
    Ok(bytes)
}

/// Whether `a` equals `b`, in time that does not depend on where they
/// differ (the length is not secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_compared_in_full() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert_ne!(random::<16>().unwrap(), random::<16>().unwrap());
    }
}
