//! PEM certificates to DER, which is what `kube::Config::root_cert` takes (kube's own PEM
//! reader is private and only reachable through its async kubeconfig loader).

/// The DER bytes of every `CERTIFICATE` block in `pem`, in order; an error names what is wrong.
pub fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let body_and_more = &rest[start + BEGIN.len()..];
        let end = body_and_more.find(END).ok_or("a certificate block has no END line")?;
        let body: String = body_and_more[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
        out.push(base64_decode(&body).ok_or("a certificate block is not valid base64")?);
        rest = &body_and_more[end + END.len()..];
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(out)
}

/// Standard base64 with padding, as PEM uses; `None` on any other character or bad length.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * padding as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (text, bytes) in [
            ("", &b""[..]),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("+/8=", &[0xfb, 0xff]),
        ] {
            assert_eq!(base64_decode(text).as_deref(), Some(bytes), "{text}");
        }
        for bad in ["Zg=", "Z===", "Zg==Zm9v", "Zm9*"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_certificate_block_is_read() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nZm9v\nYmFy\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\r\nZg==\r\n-----END CERTIFICATE-----\n";
        assert_eq!(certificates(pem), Ok(vec![b"foobar".to_vec(), b"f".to_vec()]));
    }

    #[test]
    fn bad_pem_is_an_error() {
        assert!(certificates("").unwrap_err().contains("no CERTIFICATE"));
        assert!(certificates("-----BEGIN CERTIFICATE-----\nZm9v").unwrap_err().contains("END"));
        let bad = "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----";
        assert!(certificates(bad).unwrap_err().contains("base64"));
    }
}
