//! Certificates for the unit tests, made with rcgen: self-signed ones, a CA and
//! leaves it signs, written to a temporary directory; and loopback connections
//! to run a handshake over.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::certs::CertFiles;

/// A certificate and its key, as PEM.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// Kept to sign leaves when this is a CA.
    signer: Option<(rcgen::Certificate, KeyPair)>,
}

/// When the test certificates expire: 2040-06-01.
pub const NOT_AFTER_SECS: u64 = 2_222_121_600;

fn params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_after = rcgen::date_time_ymd(2040, 6, 1);
    params
}

/// A self-signed certificate for `names` with a fresh ECDSA P-256 key.
pub fn self_signed(names: &[&str]) -> TestCert {
    let key = KeyPair::generate().unwrap();
    let cert = params(names).self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        signer: None,
    }
}

/// A CA that signs leaves ([`TestCert::leaf`]).
pub fn ca() -> TestCert {
    let key = KeyPair::generate().unwrap();
    let mut params = params(&[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rtmpd test CA");
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
        signer: Some((cert, key)),
    }
}

impl TestCert {
    /// A leaf for `names` signed by this CA; its PEM holds the leaf then the CA.
    pub fn leaf(&self, names: &[&str]) -> TestCert {
        let (ca, ca_key) = self.signer.as_ref().expect("a CA");
        let key = KeyPair::generate().unwrap();
        let cert = params(names).signed_by(&key, ca, ca_key).unwrap();
        TestCert {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            signer: None,
        }
    }

    /// A self-signed certificate for `localhost` whose key file is `legacy_pem`
    /// (an RSA PKCS#1 or EC SEC1 key, [`RSA_PKCS1`], [`EC_SEC1`]).
    pub fn from_key_pem(legacy_pem: &str) -> TestCert {
        let (pkcs8, alg) = match legacy_pem {
            RSA_PKCS1 => (RSA_PKCS8, &rcgen::PKCS_RSA_SHA256),
            EC_SEC1 => (EC_PKCS8, &rcgen::PKCS_ECDSA_P256_SHA256),
            _ => panic!("not one of the test keys"),
        };
        let key = KeyPair::from_pem_and_sign_algo(pkcs8, alg).unwrap();
        let cert = params(&["localhost"]).self_signed(&key).unwrap();
        TestCert {
            cert_pem: cert.pem(),
            key_pem: legacy_pem.to_owned(),
            der: cert.der().to_vec(),
            signer: None,
        }
    }

    /// Writes `LABEL.crt` and `LABEL.key` into `dir`.
    pub fn write(&self, dir: &TempDir, label: &str) -> CertFiles {
        let files = CertFiles {
            cert: dir.join(&format!("{label}.crt")),
            key: dir.join(&format!("{label}.key")),
        };
        std::fs::write(&files.cert, &self.cert_pem).unwrap();
        std::fs::write(&files.key, &self.key_pem).unwrap();
        files
    }

    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(&self.der);
        digest
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    pub fn not_after(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOT_AFTER_SECS)
    }
}

/// A directory removed at the end of the test.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rtmpd-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An RSA key in its PKCS#1 form, as `openssl genrsa -traditional` writes it
/// (made for these tests only; no secret).
pub const RSA_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAnYx+vWD3b05AAq5PyjJt4V/y/Tr/X3KO+vQupkiRZTbGzhPn
wfvrqrebn6zActe0xNxtUQ8oeQoGWjoBYz/sqdAb8TeAhTMzPiBJt++xYVYi81VW
hokIIZyIcLoZjXqBNezk2RMI4RxE0IFjuGmTU79Ka0rmAPcrBZVmoq9mpN4nR4n6
TOSketu2mJgIfP4tevuEAg7x7pmBiogn4PD44vGM9uuAuQK9/WVsmEwQ/9jkzsiJ
L91vxB/2aP4H3zOzw5iZUxEf0HVWWowqzXL0zk6Y1E3pdr2Ppp4J/8zKLg0EBEFC
T+qlXXcb1rDwuVTJ1kuh+7ZipklUpbTmXaMCMQIDAQABAoIBAAKbQ7CF5WoTwRba
Q+ssNOms4PQEERwG5OstdYUeP7uNMbJQnX212YMISRyV6tQrkevM2skjx09jVVIS
UhoOgW+YyBGQUcHCZFdjiNywbD6YQnlEoOsWYspNkOtOhOQ0keUuv2WA/V1eDpxl
e50eMAgLauOGCHKdJDrSKzHHVZsmJBPXH4zd26ohr64BglG4yWkFuvGz/QJtBZa3
udl3aXRaq7rzDIrfCSm4R2mvJDK2mCwMZS7RyhaiC0x9E9UC/6MPfz8fOHRWZypj
oyWvveBkDZWh7o1uIguM7q6lMaCcNKoasLOKlNbPnMbjVC6l1MPuVVv5JkcDahLi
msPz8wECgYEA23trRSS9VMb5WVM6cFUKOkZvf623k0pO5AgSX7u/z3k1nd/O8Igz
TZfQpS5s2Q4h4dx4kIVKE2rQZMG8VGCFoV0hobKrnUv0B2KkVCiDQ4jrrivCr6Io
Vj5I87hAh7y735yCbKDSqtevXl548T+q4zV090SDIcZU5qYGPhRkYvECgYEAt8MZ
t1fedvVDJ3O3W03DooBdChIhA8Ku1vIBe5nTn2d2JOT9opEftSlyRqAa3RO0Usa8
Dd2Fv0vhYbc5ICR3u2FqcKmr6TX5T0Do1VQJWrTJc8sSHi3n7UdIV14vOki+7TNs
PiqC55mvC8xdwjX04rrJfozRF2ZBQyIrwk2uE0ECgYEAvCK6G8XXaUE54kC+eiXb
I4LW9poBHwd2Qm9M2LUGQSEEPbToHTSSzXNSDRWThidgEcw7qJ4oliZcRdHvzmAC
jARZ3NJb2vSNVHtQozcq9Yv7ggvO0WBttSekvw10eyXj4VS2U8kza/CASaMvhpRt
tl9PSNl4kk4A3sj31uUB+/ECgYARqjOiqFO+Y71c4YbSxBr2WBiZizyZO/HKv+Dc
nOD3Bd8ZlNm88u51X9KYb3OlpOtEuc4CFzVwOj8kQZTAPkE0Rh0RT34zIPkiYT8A
ot9zVMW41+CZ/he5e4y8uVUY6T1RWAwjvbpvwRpOrAqnTMCJuyL7g1XmRfIoHfTO
7OC7AQKBgHA/jodLYE/VFKqPWSHnBSRXRi+z4M8YQuQqdWQO6Vp8FCvL1NNrJGMA
yYkiNm3Dpsbcd4XiMNSvcDdZbyEsCNZBtA6PVh2uh3/cxvc2LDDdIhU08yVPoKEL
d/yPPw4VxSY2B1ivHvsW72kOv6IOLc1EXBpT+KIosdE8NCIF3sui
-----END RSA PRIVATE KEY-----
";
/// The same key as PKCS#8, for rcgen to sign with.
pub const RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCdjH69YPdvTkAC
rk/KMm3hX/L9Ov9fco769C6mSJFlNsbOE+fB++uqt5ufrMBy17TE3G1RDyh5CgZa
OgFjP+yp0BvxN4CFMzM+IEm377FhViLzVVaGiQghnIhwuhmNeoE17OTZEwjhHETQ
gWO4aZNTv0prSuYA9ysFlWair2ak3idHifpM5KR627aYmAh8/i16+4QCDvHumYGK
iCfg8Pji8Yz264C5Ar39ZWyYTBD/2OTOyIkv3W/EH/Zo/gffM7PDmJlTER/QdVZa
jCrNcvTOTpjUTel2vY+mngn/zMouDQQEQUJP6qVddxvWsPC5VMnWS6H7tmKmSVSl
tOZdowIxAgMBAAECggEAAptDsIXlahPBFtpD6yw06azg9AQRHAbk6y11hR4/u40x
slCdfbXZgwhJHJXq1CuR68zaySPHT2NVUhJSGg6Bb5jIEZBRwcJkV2OI3LBsPphC
eUSg6xZiyk2Q606E5DSR5S6/ZYD9XV4OnGV7nR4wCAtq44YIcp0kOtIrMcdVmyYk
E9cfjN3bqiGvrgGCUbjJaQW68bP9Am0Flre52XdpdFqruvMMit8JKbhHaa8kMraY
LAxlLtHKFqILTH0T1QL/ow9/Px84dFZnKmOjJa+94GQNlaHujW4iC4zurqUxoJw0
qhqws4qU1s+cxuNULqXUw+5VW/kmRwNqEuKaw/PzAQKBgQDbe2tFJL1UxvlZUzpw
VQo6Rm9/rbeTSk7kCBJfu7/PeTWd387wiDNNl9ClLmzZDiHh3HiQhUoTatBkwbxU
YIWhXSGhsqudS/QHYqRUKINDiOuuK8KvoihWPkjzuECHvLvfnIJsoNKq169eXnjx
P6rjNXT3RIMhxlTmpgY+FGRi8QKBgQC3wxm3V9529UMnc7dbTcOigF0KEiEDwq7W
8gF7mdOfZ3Yk5P2ikR+1KXJGoBrdE7RSxrwN3YW/S+FhtzkgJHe7YWpwqavpNflP
QOjVVAlatMlzyxIeLeftR0hXXi86SL7tM2w+KoLnma8LzF3CNfTiusl+jNEXZkFD
IivCTa4TQQKBgQC8IrobxddpQTniQL56Jdsjgtb2mgEfB3ZCb0zYtQZBIQQ9tOgd
NJLNc1INFZOGJ2ARzDuoniiWJlxF0e/OYAKMBFnc0lva9I1Ue1CjNyr1i/uCC87R
YG21J6S/DXR7JePhVLZTyTNr8IBJoy+GlG22X09I2XiSTgDeyPfW5QH78QKBgBGq
M6KoU75jvVzhhtLEGvZYGJmLPJk78cq/4Nyc4PcF3xmU2bzy7nVf0phvc6Wk60S5
zgIXNXA6PyRBlMA+QTRGHRFPfjMg+SJhPwCi33NUxbjX4Jn+F7l7jLy5VRjpPVFY
DCO9um/BGk6sCqdMwIm7IvuDVeZF8igd9M7s4LsBAoGAcD+Oh0tgT9UUqo9ZIecF
JFdGL7PgzxhC5Cp1ZA7pWnwUK8vU02skYwDJiSI2bcOmxtx3heIw1K9wN1lvISwI
1kG0Do9WHa6Hf9zG9zYsMN0iFTTzJU+goQt3/I8/DhXFJjYHWK8e+xbvaQ6/og4t
zURcGlP4oiix0Tw0IgXey6I=
-----END PRIVATE KEY-----
";

/// An EC key in its SEC1 form, as `openssl ecparam -genkey` writes it
/// (made for these tests only; no secret).
pub const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIM61YN7Q5jDpFlRv3N94BQgE9wSxXeUtBaKtPPZb5va1oAoGCCqGSM49
AwEHoUQDQgAE3/2SR4BXJ3dVGp4oMU7F6D6TbyZYrkZD3vpfm6Xa2X1IwgKxyK8C
Z+YbszvDNkVPi+AEnr+Atf164+BUwJ4IZA==
-----END EC PRIVATE KEY-----
";
/// The same key as PKCS#8, for rcgen to sign with.
pub const EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzrVg3tDmMOkWVG/c
33gFCAT3BLFd5S0Foq089lvm9rWhRANCAATf/ZJHgFcnd1UanigxTsXoPpNvJliu
RkPe+l+bpdrZfUjCArHIrwJn5huzO8M2RU+L4ASev4C1/Xrj4FTAnghk
-----END PRIVATE KEY-----
";
