//! PEM certificates to DER, which is what `kube::Config::root_cert` takes (kube's own PEM
//! reader is private and only reachable through its async kubeconfig loader). The PEM framing
//! and base64 are rustls's `pki_types::pem`, the reader rustls itself loads CA bundles with.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

/// The DER bytes of every `CERTIFICATE` block in `pem`, in order. Text around the blocks and
/// blocks of other kinds (a key kept in the same file) are skipped, as client-go's
/// `ParseCertsPEM` skips them; an error names what is wrong.
pub fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let ders = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|block| block.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(describe)?;
    if ders.is_empty() {
        return Err("no CERTIFICATE block (expected PEM text with '-----BEGIN CERTIFICATE-----' lines)".into());
    }
    Ok(ders)
}

/// pki_types' error in words (its own Display shows the missing END label as a list of bytes).
fn describe(error: pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(&end_marker);
            format!("a {label} block has no '-----END {label}-----' line")
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line '{}'", String::from_utf8_lossy(&line).trim())
        }
        pem::Error::Base64Decode(reason) => format!("a CERTIFICATE block is not valid base64: {reason}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA as `tug server` makes one: its PEM and its DER.
    fn ca(name: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn a_single_ca_is_read() {
        let (pem, der) = ca("tugboat-ca");
        assert_eq!(certificates(&pem), Ok(vec![der]));
    }

    /// A bundle during CA rotation holds the old and the new CA; both must be trusted, in order,
    /// whatever the line ends and whatever sits between the blocks.
    #[test]
    fn every_certificate_of_a_bundle_is_read() {
        let ((old_pem, old_der), (new_pem, new_der)) = (ca("tugboat-ca-old"), ca("tugboat-ca-new"));
        let want = Ok(vec![old_der, new_der]);
        let bundle = format!("{old_pem}{new_pem}");
        assert_eq!(certificates(&bundle), want);
        assert_eq!(certificates(&bundle.replace('\n', "\r\n")), want, "CRLF line ends");
        let annotated = format!("# old CA\n{old_pem}\n# new CA, from 2025\n{new_pem}");
        assert_eq!(certificates(&annotated), want, "comments between blocks");
        let with_key = format!("{old_pem}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{new_pem}");
        assert_eq!(certificates(&with_key), want, "a key block is skipped");
    }

    #[test]
    fn bad_pem_is_an_error_that_says_why() {
        let (pem, _) = ca("tugboat-ca");
        for (text, says) in [
            ("", "no CERTIFICATE block"),
            ("not a certificate at all", "no CERTIFICATE block"),
            ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no CERTIFICATE block"),
            ("-----BEGIN CERTIFICATE-----\nMIIB", "no '-----END CERTIFICATE-----' line"),
            ("-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n", "not valid base64"),
            (&pem.replacen("-----END CERTIFICATE-----", "", 1), "no '-----END CERTIFICATE-----' line"),
        ] {
            let error = certificates(text).expect_err(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
