//! TLS on the bank link, with rustls on both sides.
//!
//! Client side: every HTTP client that talks to a bank is built by [`http_client`],
//! which trusts the web PKI roots plus, optionally, the certificates of one extra
//! CA file ([`BankCa`], the `--bank-ca PATH` flag) — a bank's private CA, or the
//! CA `settle bank-sim --tls` generates.
//!
//! Server side (the simulator only): [`SimCertificate`] makes a throwaway CA at start
//! and a server certificate signed by it for the names the simulator answers on;
//! [`TlsListener`] accepts TCP connections and completes each handshake on its own
//! task, so one slow or silent client never holds up the others.
//!
//! This module never disables certificate verification and never logs key material.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Why a TLS setting could not be used. Each variant has a stable [`TlsError::code`].
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaUnreadable { path: String, reason: String },
    #[error("the CA file {path} holds no PEM certificate")]
    CaEmpty { path: String },
    #[error("cannot make the simulator's certificate: {0}")]
    Certificate(String),
}

impl TlsError {
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::CaUnreadable { .. } => "bank_ca_unreadable",
            TlsError::CaEmpty { .. } => "bank_ca_empty",
            TlsError::Certificate(_) => "tls_certificate",
        }
    }
}

/// Certificates of one extra CA file the bank client trusts besides the web PKI.
#[derive(Clone, Debug)]
pub struct BankCa {
    certificates: Vec<reqwest::Certificate>,
}

/// A CA file larger than this is refused: a bundle of a few CAs is a few KiB.
const CA_FILE_BYTES_MAX: u64 = 1 << 20;

impl BankCa {
    /// Reads a PEM file of one or more certificates.
    pub fn load(path: &Path) -> Result<BankCa, TlsError> {
        let unreadable = |reason: String| TlsError::CaUnreadable {
            path: path.display().to_string(),
            reason,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| unreadable(e.to_string()))?
            .len();
        if size > CA_FILE_BYTES_MAX {
            return Err(unreadable(format!("over {CA_FILE_BYTES_MAX} bytes")));
        }
        let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        BankCa::from_pem(&pem).map_err(|error| match error {
            TlsError::CaEmpty { .. } => TlsError::CaEmpty {
                path: path.display().to_string(),
            },
            other => other,
        })
    }

    /// Parses PEM text of one or more certificates.
    pub fn from_pem(pem: &[u8]) -> Result<BankCa, TlsError> {
        let certificates =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| TlsError::CaUnreadable {
                path: "(PEM text)".into(),
                reason: e.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(TlsError::CaEmpty {
                path: "(PEM text)".into(),
            });
        }
        Ok(BankCa { certificates })
    }
}

/// A client builder that speaks HTTPS with rustls, trusting the web PKI roots and
/// `extra_ca` if given. Callers add their timeouts and pool settings.
pub fn http_client(extra_ca: Option<&BankCa>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(ca) = extra_ca {
        for certificate in &ca.certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
    }
    builder
}

/// A CA made at start and a server certificate it signed, for the simulator.
pub struct SimCertificate {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl SimCertificate {
    /// Makes a fresh CA and a certificate for `names` (host names or IP addresses).
    pub fn generate(names: &[String]) -> Result<SimCertificate, TlsError> {
        let failed = |e: rcgen::Error| TlsError::Certificate(e.to_string());
        let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "settle bank-sim CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).map_err(failed)?;

        let server_key = rcgen::KeyPair::generate().map_err(failed)?;
        let mut server_params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
        server_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "settle bank-sim");
        let server_cert = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .map_err(failed)?;

        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Certificate(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], key_der)
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        Ok(SimCertificate {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        })
    }

    /// The CA's certificate as PEM, for a client's `--bank-ca`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA's certificate, ready for [`http_client`].
    pub fn bank_ca(&self) -> Result<BankCa, TlsError> {
        BankCa::from_pem(self.ca_pem.as_bytes())
    }
}

/// Handshakes waiting to be served; more wait in the kernel's accept queue.
const HANDSHAKES_READY_MAX: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// A TCP listener whose connections are TLS, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    /// The accept loop; aborted when the listener is dropped.
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, certificate: &SimCertificate) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(certificate.server.clone());
        let (sender, ready) = mpsc::channel(HANDSHAKES_READY_MAX);
        let acceptor_task = tokio::spawn(accept_loop(listener, acceptor, sender));
        Ok(TlsListener {
            ready,
            local_addr,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(%error, "accepting a TLS connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if ready.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(
                Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
                acceptor.accept(tcp),
            )
            .await;
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// The peer of a connection, plain or TLS, for the simulator's per-client limits.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_reads_back_as_a_bank_ca() {
        let certificate =
            SimCertificate::generate(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        assert!(
            certificate
                .ca_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        certificate.bank_ca().unwrap();
    }

    #[test]
    fn a_file_without_a_certificate_is_refused_with_a_code() {
        let error = BankCa::from_pem(b"not a certificate").unwrap_err();
        assert!(matches!(
            error.code(),
            "bank_ca_empty" | "bank_ca_unreadable"
        ));
    }
}
