//! Key ranges and list continuation, shared by the backends.

use crate::{Error, Result, Revision};

/// The smallest key greater than every key starting with `prefix`, or `None` when the range is
/// unbounded (an empty prefix, or one of only 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Where the next page of a list starts: the revision of the first page (so all pages are one
/// consistent snapshot) and the last key already returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    pub revision: Revision,
    pub last_key: String,
}

impl ContinueToken {
    /// Opaque text form: `<revision>.<hex of last key>`.
    pub fn encode(&self) -> String {
        let mut s = format!("{}.", self.revision);
        for b in self.last_key.as_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn decode(token: &str) -> Result<Self> {
        let bad = || Error::InvalidContinue(format!("{token:?} was not issued by this store"));
        let (rev, hex) = token.split_once('.').ok_or_else(bad)?;
        let revision: Revision = rev.parse().map_err(|_| bad())?;
        if hex.len() % 2 != 0 || revision <= 0 {
            return Err(bad());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        let last_key = String::from_utf8(bytes).map_err(|_| bad())?;
        Ok(ContinueToken { revision, last_key })
    }
}

/// The first key strictly after `key`.
pub(crate) fn key_after(key: &str) -> Vec<u8> {
    let mut k = key.as_bytes().to_vec();
    k.push(0);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn continue_token_round_trips_and_rejects_garbage() {
        let t = ContinueToken { revision: 42, last_key: "/registry/pods/ns/ä".into() };
        assert_eq!(ContinueToken::decode(&t.encode()).unwrap(), t);
        for bad in ["", "x.00", "5.0", "5.zz", "-1.61", "5"] {
            assert!(ContinueToken::decode(bad).is_err(), "{bad:?} accepted");
        }
    }
}
