//! AWS configuration: region names and (with the token work) region
//! resolution and credentials.

/// Whether `s` has the shape of an AWS region name: lowercase words joined
/// by `-`, a two-letter partition prefix and a trailing number
/// (`us-east-1`, `us-gov-west-1`, `cn-northwest-1`, `eu-isoe-west-1`).
///
/// ```
/// use rdsconn::aws::is_valid_region;
/// assert!(is_valid_region("us-gov-west-1"));
/// assert!(!is_valid_region("US-EAST-1"));
/// assert!(!is_valid_region("us-east-1a")); // an availability zone
/// ```
pub fn is_valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words[0].len() == 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_syntax() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-northwest-1",
            "eu-isoe-west-1",
            "ap-southeast-10",
        ] {
            assert!(is_valid_region(ok), "{ok}");
        }
        for bad in [
            "",
            "us",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "us--1",
            "useast-1",
            "us-east-123",
            "us east-1",
        ] {
            assert!(!is_valid_region(bad), "{bad}");
        }
    }
}
