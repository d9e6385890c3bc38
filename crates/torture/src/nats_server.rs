//! A private `nats-server` with JetStream for one torture run: its own port and
//! store directory, so killing and restarting it disturbs nobody else. The
//! binary is `SETTLE_NATS_SERVER`, else `/usr/sbin/nats-server`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::TortureError;

/// How long a starting server may take to accept connections.
const START_TIMEOUT_MS: u64 = 20_000;

/// The binary to run.
pub fn binary() -> PathBuf {
    std::env::var_os("SETTLE_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// A running private server.
pub struct PrivateNats {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
    pub restarts: u64,
}

impl PrivateNats {
    /// Starts a server on a free port with its store under `dir`.
    pub async fn start(dir: &Path) -> Result<PrivateNats, TortureError> {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let child = spawn(&dir, port).await?;
        Ok(PrivateNats {
            child,
            port,
            dir,
            restarts: 0,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILLs the server and starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<(), TortureError> {
        self.child.start_kill()?;
        let _ = self.child.wait().await;
        self.child = spawn(&self.dir, self.port).await?;
        self.restarts += 1;
        Ok(())
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn spawn(dir: &Path, port: u16) -> Result<tokio::process::Child, TortureError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats-server.log"))?;
    let child = tokio::process::Command::new(binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TortureError::Child(format!("starting {}: {e}", binary().display())))?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(TortureError::Child(format!(
        "nats-server did not listen on port {port} within {START_TIMEOUT_MS} ms"
    )))
}
