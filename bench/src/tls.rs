//! TLS on the bench's path to moto server and stripe-sim, as on the path to AWS and Stripe:
//! a CA the bench makes for the run, a certificate for 127.0.0.1 it signs, and a TLS
//! terminator in front of each server (the harness's TCP forwarder, wrapping each accepted
//! connection in a TLS session). Both stacks are told to trust the CA (`SSL_CERT_FILE`,
//! `AWS_CA_BUNDLE`: a file holding just it). The AWS SDK still loads the platform's roots
//! too (rustls-native-certs reads the certificate directory besides that file), as it does
//! in Lambda; the Stripe transport adds the file to its compiled-in roots; boto3 and
//! stripe-python load only the file, not their own bundle (which favours Python).
//!
//! The terminator offers no ALPN: both stacks speak HTTP/1.1 to it, which is what the
//! servers behind it speak.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use harness::tcp::{Forwarder, Stream};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio_rustls::{
    rustls::{
        pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
        ServerConfig,
    },
    TlsAcceptor,
};

pub struct Terminators {
    /// The bench CA (PEM).
    pub ca_bundle: PathBuf,
    pub aws: Forwarder,
    pub stripe: Forwarder,
}

impl Terminators {
    pub fn aws_url(&self) -> String {
        format!("https://{}", self.aws.addr)
    }
    pub fn stripe_url(&self) -> String {
        format!("https://{}", self.stripe.addr)
    }
}

fn certificates(dir: &Path) -> Result<(PathBuf, ServerConfig), String> {
    let err = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "LogiScore bench CA (one run)");
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    leaf.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(err)?;

    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, ca_cert.pem()).map_err(|e| e.to_string())?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone()];
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok((bundle, config))
}

async fn terminator(upstream: &str, acceptor: TlsAcceptor) -> Forwarder {
    Forwarder::with(upstream, move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move { acceptor.accept(tcp).await.map(|tls| Box::new(tls) as Box<dyn Stream>) })
    })
    .await
}

/// Terminators in front of `aws` and `stripe` (plain `http://` URLs), certificates in `dir`.
pub async fn start(aws: &str, stripe: &str, dir: &Path) -> Result<Terminators, String> {
    let (ca_bundle, config) = certificates(dir)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    Ok(Terminators { ca_bundle, aws: terminator(aws, acceptor.clone()).await, stripe: terminator(stripe, acceptor).await })
}
