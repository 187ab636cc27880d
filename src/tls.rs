//! TLS policy: how a server certificate is verified, the rustls client
//! configuration that enforces it, what was verified (for `--info`), and
//! TLS failures turned into one clear line.
//!
//! `verify-full` checks the chain against the RDS roots *and* that the
//! certificate is valid for the endpoint name (never the `--via` dial
//! address). `verify-ca` checks the chain only. There is no mode without
//! verification.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

use crate::target::EndpointClass;

/// How the server certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Chain to the CA bundle and the name equals the endpoint (MySQL
    /// `VERIFY_IDENTITY`, libpq verify-full).
    VerifyFull,
    /// Chain to the CA bundle only; any name.
    VerifyCa,
}

impl TlsMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VerifyFull => "verify-full",
            Self::VerifyCa => "verify-ca",
        }
    }
}

/// Roots plus mode: everything needed to build a verifying client config.
#[derive(Clone, Debug)]
pub(crate) struct TlsPolicy {
    pub mode: TlsMode,
    pub roots: Arc<crate::ca::Roots>,
}

/// The certificate chain a server presented, as seen by the verifier.
#[derive(Debug, Default)]
pub(crate) struct PeerChain(Mutex<Vec<CertificateDer<'static>>>);

impl PeerChain {
    /// The chain of the last handshake (leaf first); empty before one.
    pub(crate) fn get(&self) -> Vec<CertificateDer<'static>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl TlsPolicy {
    /// A rustls config enforcing the policy; `peer` receives the chain the
    /// server presents (verified or not, for error messages).
    pub(crate) fn client_config(
        &self,
        peer: Arc<PeerChain>,
    ) -> Result<rustls::ClientConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::clone(&self.roots.store),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = Verifier {
            inner,
            mode: self.mode,
            peer,
        };
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }
}

/// `WebPKI` verification, recording the chain; in verify-ca mode a name
/// mismatch (and only that) is accepted.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    mode: TlsMode,
    peer: Arc<PeerChain>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.peer.0.lock().unwrap_or_else(PoisonError::into_inner) = chain;
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.mode == TlsMode::VerifyCa => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What `--info` reports about a server certificate.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub(crate) struct CertSummary {
    pub subject: String,
    pub sans: Vec<String>,
    pub issuer: String,
    pub not_after: String,
    /// `not_after` as Unix seconds.
    #[serde(skip)]
    pub not_after_unix: i64,
}

impl CertSummary {
    /// Parses a DER certificate; `None` if it is not X.509.
    pub(crate) fn from_der(der: &[u8]) -> Option<Self> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_string()),
                        GeneralName::IPAddress(ip) => ip_string(ip),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            subject: cert.subject().to_string(),
            sans,
            issuer: cert.issuer().to_string(),
            not_after: crate::ca::rfc3339(cert.validity().not_after.timestamp()),
            not_after_unix: cert.validity().not_after.timestamp(),
        })
    }
}

fn ip_string(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(raw)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// What a verified TLS session looked like.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct TlsInfo {
    pub mode: Option<TlsMode>,
    /// e.g. `TLSv1.3`, as the server reports it.
    pub protocol: Option<String>,
    pub cipher: Option<String>,
    pub certificate: Option<CertSummary>,
}

/// A TLS failure, classified for the one-line error and its hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The certificate is not valid for the endpoint name.
    WrongName {
        expected: String,
        presented: Vec<String>,
    },
    /// The chain does not lead to a trusted root; `expected` is the
    /// endpoint name (its class decides which roots it gets).
    UnknownCa {
        expected: String,
        /// The roots that were trusted (`ca::Roots::name`).
        roots: &'static str,
        /// Who issued the top of the chain the server sent (its text:
        /// shown escaped).
        issuer: Option<String>,
    },
    /// The certificate expired; its `notAfter` day (`2025-01-01`).
    Expired {
        on: Option<String>,
    },
    NotYetValid,
    Revoked,
    /// The server does not offer TLS at all.
    NoTls,
    Other(String),
}

impl TlsFailure {
    /// Classifies a rustls error; `expected` is the endpoint name.
    pub(crate) fn from_rustls(
        err: &rustls::Error,
        expected: &str,
        peer: &[CertificateDer<'_>],
        roots: &'static str,
    ) -> Self {
        // The chain rdsconn's verifier recorded (for drivers with their own
        // verifier, a probe records it).
        let presented = || {
            peer.first()
                .and_then(|c| CertSummary::from_der(c))
                .map(|s| s.sans)
                .unwrap_or_default()
        };
        match err {
            rustls::Error::InvalidCertificate(e) => match e {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Self::WrongName {
                    expected: expected.to_string(),
                    presented: presented(),
                },
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Self::UnknownCa {
                        expected: expected.to_string(),
                        roots,
                        issuer: peer
                            .last()
                            .and_then(|c| CertSummary::from_der(c))
                            .map(|s| s.issuer),
                    }
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    Self::Expired {
                        on: peer
                            .first()
                            .and_then(|c| CertSummary::from_der(c))
                            .and_then(|s| s.not_after.get(..10).map(str::to_string)),
                    }
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    Self::NotYetValid
                }
                CertificateError::Revoked => Self::Revoked,
                other => Self::Other(format!("{other:?}")),
            },
            other => Self::Other(other.to_string()),
        }
    }

    pub(crate) fn hint(&self) -> Option<String> {
        match self {
            Self::WrongName { expected, presented } if class_of(expected) == EndpointClass::Other => {
                let rds_name = presented
                    .iter()
                    .find(|n| class_of(n) != EndpointClass::Other)
                    .map_or("the RDS endpoint name", String::as_str);
                Some(format!(
                    "{expected} is not an RDS endpoint name; if it is a CNAME of one, pass {rds_name} as --host \
                     and {expected}:PORT as --via (the token and the check stay with the RDS name)"
                ))
            }
            Self::WrongName { .. } => Some(
                "connect with the RDS endpoint name as --host and send traffic elsewhere with --via; \
                 --tls verify-ca skips only the name check"
                    .into(),
            ),
            Self::UnknownCa {
                expected, roots, ..
            } => Some(match *roots {
                crate::ca::FILE_ROOTS => {
                    "the --ca-bundle file does not hold the CA of the server's certificate".into()
                }
                crate::ca::AMAZON_ROOTS => format!(
                    "{expected} gets the Amazon Trust Services roots (RDS Proxy and Aurora DSQL \
                     certificates come from ACM; see `rdsconn ca show --for {expected}`); \
                     --ca-bundle replaces them"
                ),
                _ => {
                    "the server's certificate does not chain to the RDS CA bundle: run `rdsconn ca fetch`, \
                     or pass the right bundle with --ca-bundle (an RDS Proxy behind another name: \
                     pass the proxy's name as --host and this one as --via)"
                        .into()
                }
            }),
            Self::Expired { .. } => Some("the server certificate has expired; rotate it (RDS: modify the instance's CA)".into()),
            Self::NoTls => Some("enable TLS on the server (RDS always offers it); rdsconn never connects without it".into()),
            _ => None,
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongName {
                expected,
                presented,
            } if presented.is_empty() => {
                write!(f, "server certificate is not valid for {expected:?}")
            }
            Self::WrongName {
                expected,
                presented,
            } => write!(
                f,
                "server certificate is not valid for {expected:?} (it is for: {})",
                presented.join(", ")
            ),
            Self::UnknownCa {
                roots,
                issuer: Some(issuer),
                ..
            } => write!(
                f,
                "server certificate is not trusted: issued by \"{}\", a CA outside {roots}",
                crate::text::Untrusted(issuer)
            ),
            Self::UnknownCa { roots, .. } => write!(
                f,
                "server certificate is not trusted: issued by a CA outside {roots}"
            ),
            Self::Expired { on: Some(day) } => write!(
                f,
                "server certificate expired {day}; or check this machine's clock"
            ),
            Self::Expired { on: None } => f.write_str("server certificate has expired"),
            Self::NotYetValid => {
                f.write_str("server certificate is not valid yet (check the local clock)")
            }
            Self::Revoked => f.write_str("server certificate has been revoked"),
            Self::NoTls => f.write_str("the server does not offer TLS"),
            Self::Other(msg) => write!(f, "TLS handshake failed: {msg}"),
        }
    }
}

impl std::error::Error for TlsFailure {}

/// The endpoint class of a name (`Other` for one that does not parse).
fn class_of(name: &str) -> EndpointClass {
    crate::target::Host::parse(name)
        .and_then(|h| h.endpoint())
        .map_or(EndpointClass::Other, |e| e.class)
}
