//! The server's certificate from its PEM files (`--tls-cert`, `--tls-key`): the
//! chain (leaf first, as certbot's `fullchain.pem` has it) and a private key in
//! PKCS#8, RSA (PKCS#1) or EC (SEC1) form, checked to belong to the leaf. The
//! two may be one file. What an operator needs to know about what was loaded
//! (the leaf's SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256`
//! prints it, and when it expires) comes along, read from the leaf's DER.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// Where the certificate chain and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate could not be loaded; `Display` names the file.
#[derive(Debug)]
pub enum CertError {
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not PEM, or a PEM block that does not decode.
    Pem {
        path: PathBuf,
        error: String,
    },
    NoCertificate(PathBuf),
    NoKey(PathBuf),
    /// rustls refused the key (an algorithm it does not support).
    Key {
        path: PathBuf,
        error: rustls::Error,
    },
    /// The key is not the leaf certificate's.
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            CertError::Pem { path, error } => write!(f, "{}: not valid PEM: {error}", path.display()),
            CertError::NoCertificate(path) => write!(
                f,
                "{}: no certificate in it (expected PEM blocks BEGIN CERTIFICATE, the server's first)",
                path.display()
            ),
            CertError::NoKey(path) => write!(
                f,
                "{}: no private key in it (expected an unencrypted PEM key: BEGIN PRIVATE KEY, \
                 BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
                path.display()
            ),
            CertError::Key { path, error } => {
                write!(f, "{}: unusable private key: {error}", path.display())
            }
            CertError::Mismatch { cert, key } => write!(
                f,
                "the private key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
        }
    }
}

impl std::error::Error for CertError {}

/// A loaded certificate and what is known about it.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// What the log, the API and the metrics say about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The leaf's SHA-256 fingerprint, `AB:CD:...`.
    pub fingerprint: String,
    /// The leaf's `notAfter`, if it could be read.
    pub not_after: Option<SystemTime>,
    /// Certificates in the chain, the leaf included.
    pub chain_len: usize,
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA-256 {}", self.fingerprint)?;
        if let Some(end) = self.not_after {
            write!(f, ", valid until {}", utc(end))?;
            if end < SystemTime::now() {
                f.write_str(" (EXPIRED)")?;
            }
        }
        if self.chain_len > 1 {
            write!(f, ", {} more in the chain", self.chain_len - 1)?;
        }
        Ok(())
    }
}

/// Reads and checks the certificate and key `files` name.
pub fn load(files: &CertFiles) -> Result<Certificate, CertError> {
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: files.cert.clone(),
            error: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::NoCertificate(files.cert.clone()));
    };
    let info = CertInfo {
        fingerprint: fingerprint(leaf),
        not_after: not_after(leaf),
        chain_len: chain.len(),
    };
    let key_pem = if files.key == files.cert {
        cert_pem
    } else {
        read(&files.key)?
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(CertError::NoKey(files.key.clone()))
        }
        Err(e) => {
            return Err(CertError::Pem {
                path: files.key.clone(),
                error: e.to_string(),
            })
        }
    };
    let key = CertifiedKey::from_der(chain, key, &super::provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        error => CertError::Key {
            path: files.key.clone(),
            error,
        },
    })?;
    Ok(Certificate {
        key: Arc::new(key),
        info,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|error| CertError::Read {
        path: path.to_owned(),
        error,
    })
}

fn fingerprint(cert: &CertificateDer) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// `2027-02-28 12:00:00 UTC`.
pub fn utc(time: SystemTime) -> String {
    let t = crate::utc::UtcTime::from_system(time);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

// ---------------------------------------------------------------------------------
// The leaf's notAfter, from its DER: Certificate ::= SEQUENCE { tbsCertificate
// SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity
// SEQUENCE { notBefore, notAfter }, ... }, ... } (RFC 5280 4.1).

/// A DER reader over one constructed value's contents.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element: its tag and contents.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        self.0 = &rest[len..];
        Some((tag, &rest[..len]))
    }

    /// The next element, which must be a SEQUENCE, as a reader of its contents.
    fn sequence(&mut self) -> Option<Der<'a>> {
        match self.next()? {
            (0x30, contents) => Some(Der(contents)),
            _ => None,
        }
    }
}

/// When `cert` stops being valid.
fn not_after(cert: &[u8]) -> Option<SystemTime> {
    let mut tbs = Der(cert).sequence()?.sequence()?;
    if tbs.0.first() == Some(&0xa0) {
        tbs.next()?;
    }
    for _ in 0..3 {
        tbs.next()?; // serialNumber, signature, issuer
    }
    let mut validity = tbs.sequence()?;
    validity.next()?;
    let (tag, time) = validity.next()?;
    let secs = asn1_time(tag, std::str::from_utf8(time).ok()?)?;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// Seconds since the epoch of a UTCTime (tag 0x17, `YYMMDDHHMMSSZ`, years
/// 1950-2049) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`), the forms RFC 5280
/// allows.
fn asn1_time(tag: u8, text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<u32>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = crate::utc::days_from_civil(year, month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{ca, self_signed, TestCert};

    #[test]
    fn certificate_times_in_both_forms() {
        assert_eq!(asn1_time(0x17, "250102030405Z"), Some(1_735_787_045));
        assert_eq!(asn1_time(0x18, "20250102030405Z"), Some(1_735_787_045));
        assert_eq!(asn1_time(0x17, "991231235959Z"), Some(946_684_799));
        assert_eq!(asn1_time(0x17, "2501020304Z"), None, "no seconds");
        assert_eq!(asn1_time(0x17, "250102030405+0100"), None, "not UTC");
        assert_eq!(asn1_time(0x18, "20251302030405Z"), None, "month 13");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_735_787_045)),
            "2025-01-02 03:04:05 UTC"
        );
    }

    #[test]
    fn loads_a_chain_and_each_key_form_and_reads_the_expiry() {
        let dir = crate::tls::testing::TempDir::new("certs-load");
        let cert = ca().leaf(&["localhost"]);
        let files = cert.write(&dir, "a");
        let loaded = load(&files).unwrap();
        assert_eq!(loaded.info.chain_len, 2, "the leaf and its CA");
        assert_eq!(loaded.info.fingerprint, cert.fingerprint());
        let expected = cert.not_after();
        assert_eq!(loaded.info.not_after, Some(expected));
        assert!(loaded.info.to_string().contains("valid until"));

        // Certificate and key in one file.
        let both = dir.join("both.pem");
        std::fs::write(&both, format!("{}{}", cert.cert_pem, cert.key_pem)).unwrap();
        load(&CertFiles {
            cert: both.clone(),
            key: both,
        })
        .unwrap();

        // RSA (PKCS#1) and EC (SEC1) keys, as openssl writes them.
        for (label, pem) in [
            ("rsa", crate::tls::testing::RSA_PKCS1),
            ("ec", crate::tls::testing::EC_SEC1),
        ] {
            let files = TestCert::from_key_pem(pem).write(&dir, label);
            load(&files).unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_where() {
        let dir = crate::tls::testing::TempDir::new("certs-bad");
        let a = self_signed(&["localhost"]).write(&dir, "a");
        let b = self_signed(&["localhost"]).write(&dir, "b");
        let missing = CertFiles {
            cert: dir.join("nope.pem"),
            key: a.key.clone(),
        };
        let e = load(&missing).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("nope.pem"),
            "{e}"
        );

        let mismatch = CertFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let e = load(&mismatch).unwrap_err().to_string();
        assert!(e.contains("does not belong to the certificate"), "{e}");

        let swapped = CertFiles {
            cert: a.key.clone(),
            key: a.cert.clone(),
        };
        let e = load(&swapped).unwrap_err().to_string();
        assert!(e.contains("no certificate in it"), "{e}");

        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load(&CertFiles {
            cert: garbage,
            key: a.key.clone(),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("not valid PEM"), "{e}");

        let encrypted = dir.join("encrypted.pem");
        std::fs::write(
            &encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load(&CertFiles {
            cert: a.cert.clone(),
            key: encrypted,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("no private key in it"), "{e}");
    }
}
