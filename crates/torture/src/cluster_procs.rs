//! The cluster's processes: `settle bank-sim` on its own SQLite file, a
//! private nats-server ([`PrivateNats`]) and several `settle serve` processes
//! with split roles over one PostgreSQL schema. The parent SIGKILLs and restarts
//! them; a process that exits by itself is restarted too (a supervisor's
//! restart policy) and counted, since it tells how the product behaves.
//!
//! Each process appends its stderr to `<dir>/<name>.log`; the logs stay with a
//! failed run. Nothing here reads or writes settle's tables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TortureError;
use crate::nats_server::PrivateNats;

/// How long a `settle bank-sim` may take to print its port.
const BANK_START_TIMEOUT_MS: u64 = 60_000;
/// How long the API process may take to answer `/healthz` after a start.
const API_START_TIMEOUT_MS: u64 = 120_000;
/// How long a stopping process may take after SIGTERM before it is SIGKILLed.
const STOP_TIMEOUT_MS: u64 = 30_000;

/// One `settle serve` process of the cluster.
pub(crate) struct ServeSpec {
    /// Unique name, e.g. `dispatcher-2`; its log is `<name>.log`.
    pub name: String,
    /// What kills are counted under: `api`, `dispatcher`, `workers`.
    pub kind: &'static str,
    pub roles: &'static str,
}

/// The four-process shape the issue asks for: the API alone, two event
/// dispatchers, and one process for the schedulers and pollers.
pub(crate) fn default_shape() -> Vec<ServeSpec> {
    let spec = |name: &str, kind, roles| ServeSpec {
        name: name.to_owned(),
        kind,
        roles,
    };
    vec![
        spec("api", "api", "api"),
        spec("dispatcher-1", "dispatcher", "dispatcher"),
        spec("dispatcher-2", "dispatcher", "dispatcher"),
        spec("workers", "workers", "fees,payroll,reconciler,expiry"),
    ]
}

struct ServeProc {
    spec: ServeSpec,
    child: Option<Child>,
}

/// How a stopped process ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StopOutcome {
    pub name: String,
    /// The exit code, or None when it had to be SIGKILLed (or died by a signal).
    pub exit_code: Option<i32>,
    pub stopped_within_timeout: bool,
}

/// Every process of one cluster run.
pub(crate) struct Cluster {
    program: PathBuf,
    database_url: String,
    dir: PathBuf,
    pub bank_url: String,
    bank: Child,
    pub nats: PrivateNats,
    /// Where the API process listens (the same port across restarts).
    pub api_url: String,
    listen: String,
    serves: Vec<ServeProc>,
    /// SIGKILLs the parent sent, per process kind.
    pub kills: BTreeMap<String, u64>,
    /// Exits nobody asked for (then restarted), per process kind.
    pub unplanned_exits: BTreeMap<String, u64>,
    pub unplanned_exit_samples: Vec<String>,
    pub fees_every_s: u64,
    pub connections_max: u32,
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, TortureError> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?)
}

fn free_port() -> Result<u16, TortureError> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

impl Cluster {
    /// Starts the bank and the broker; the serve processes of `shape` start
    /// with [`Cluster::start_serves`], once the parent has set up the stores.
    pub async fn start(
        program: &Path,
        database_url: &str,
        dir: &Path,
        shape: Vec<ServeSpec>,
        fees_every_s: u64,
        connections_max: u32,
    ) -> Result<Cluster, TortureError> {
        let (bank, bank_url) = start_bank(program, dir).await?;
        let nats = PrivateNats::start(&dir.join("nats")).await?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let cluster = Cluster {
            program: program.to_path_buf(),
            database_url: database_url.to_owned(),
            dir: dir.to_path_buf(),
            bank_url,
            bank,
            nats,
            api_url: format!("http://{listen}"),
            listen,
            serves: shape
                .into_iter()
                .map(|spec| ServeProc { spec, child: None })
                .collect(),
            kills: BTreeMap::new(),
            unplanned_exits: BTreeMap::new(),
            unplanned_exit_samples: Vec::new(),
            fees_every_s,
            connections_max,
        };
        Ok(cluster)
    }

    /// Starts every serve process and waits until the API answers.
    pub async fn start_serves(&mut self) -> Result<(), TortureError> {
        for index in 0..self.serves.len() {
            self.start_serve(index)?;
        }
        self.wait_for_api().await
    }

    pub fn serve_count(&self) -> usize {
        self.serves.len()
    }

    pub fn serve_name(&self, index: usize) -> &str {
        &self.serves[index].spec.name
    }

    fn start_serve(&mut self, index: usize) -> Result<(), TortureError> {
        let proc = &mut self.serves[index];
        let log = log_file(&self.dir, &proc.spec.name)?;
        let child = Command::new(&self.program)
            .arg("serve")
            .args(["--database-url", &self.database_url])
            .args(["--nats-url", &self.nats.url()])
            .args(["--bank-url", &self.bank_url])
            .args(["--listen", &self.listen])
            .args(["--roles", proc.spec.roles])
            .args(["--fees-every-s", &self.fees_every_s.to_string()])
            .args(["--poll-every-s", "1"])
            .args([
                "--database-connections-max",
                &self.connections_max.to_string(),
            ])
            .envs(crate::installation::serve_env())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TortureError::Child(format!("starting {}: {e}", proc.spec.name)))?;
        proc.child = Some(child);
        Ok(())
    }

    /// Waits until the API process answers `/healthz`.
    pub async fn wait_for_api(&self) -> Result<(), TortureError> {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(API_START_TIMEOUT_MS);
        while tokio::time::Instant::now() < deadline {
            let answer = http
                .get(format!("{}/healthz", self.api_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let log = self.dir.join("api.log");
        let last = std::fs::read_to_string(&log)
            .ok()
            .and_then(|text| text.lines().last().map(str::to_owned))
            .unwrap_or_default();
        Err(TortureError::Child(format!(
            "the API at {} did not answer within {API_START_TIMEOUT_MS} ms; its log ({}) ends: {last}",
            self.api_url,
            log.display()
        )))
    }

    /// SIGKILLs serve process `index` and waits for it to be gone.
    pub async fn kill_serve(&mut self, index: usize) -> Result<(), TortureError> {
        let proc = &mut self.serves[index];
        if let Some(mut child) = proc.child.take() {
            child.start_kill()?;
            let _ = child.wait().await;
            *self.kills.entry(proc.spec.kind.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    /// Starts serve process `index` again if it is not running.
    pub fn restart_serve(&mut self, index: usize) -> Result<(), TortureError> {
        if self.serves[index].child.is_none() {
            self.start_serve(index)?;
        }
        Ok(())
    }

    /// Starts every serve process that is not running (end of the kills).
    pub fn restart_all(&mut self) -> Result<(), TortureError> {
        for index in 0..self.serves.len() {
            self.restart_serve(index)?;
        }
        Ok(())
    }

    /// SIGKILLs the broker and starts it again on its port and store.
    pub async fn kill_broker(&mut self) -> Result<(), TortureError> {
        self.nats.restart().await
    }

    /// Restarts every serve process that exited by itself, and counts it.
    pub async fn supervise(&mut self) -> Result<(), TortureError> {
        for index in 0..self.serves.len() {
            let proc = &mut self.serves[index];
            let Some(child) = proc.child.as_mut() else {
                continue;
            };
            if let Some(status) = child.try_wait()? {
                proc.child = None;
                *self
                    .unplanned_exits
                    .entry(proc.spec.kind.to_owned())
                    .or_default() += 1;
                if self.unplanned_exit_samples.len() < 10 {
                    self.unplanned_exit_samples
                        .push(format!("{} exited by itself: {status}", proc.spec.name));
                }
                tracing::warn!(process = %proc.spec.name, %status, "a serve process exited by itself; restarting it");
                self.start_serve(index)?;
            }
        }
        Ok(())
    }

    /// Lines of the serve processes' logs that contain any of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> u64 {
        self.serves
            .iter()
            .filter_map(|p| {
                std::fs::read_to_string(self.dir.join(format!("{}.log", p.spec.name))).ok()
            })
            .map(|text| {
                text.lines()
                    .filter(|l| needles.iter().any(|n| l.contains(n)))
                    .count() as u64
            })
            .sum()
    }

    /// PostgreSQL backends held by the serve processes right now.
    pub async fn connections(admin: &store::Store, application_name: &str) -> u64 {
        let store::Store::Postgres(pool) = admin else {
            return 0;
        };
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(application_name)
        .fetch_one(pool)
        .await
        .map(|n| u64::try_from(n).unwrap_or(0))
        .unwrap_or(0)
    }

    /// Stops every serve process with SIGTERM, as a supervisor (systemd,
    /// Kubernetes) would, and says how each ended. The bank and the broker keep running for the
    /// checks ([`Cluster::stop`]).
    pub async fn stop_serves(&mut self) -> Vec<StopOutcome> {
        let mut outcomes = Vec::new();
        for proc in self.serves.iter_mut() {
            let Some(mut child) = proc.child.take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            let waited =
                tokio::time::timeout(Duration::from_millis(STOP_TIMEOUT_MS), child.wait()).await;
            let (exit_code, stopped_within_timeout) = match waited {
                Ok(Ok(status)) => (status.code(), true),
                _ => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    (None, false)
                }
            };
            outcomes.push(StopOutcome {
                name: proc.spec.name.clone(),
                exit_code,
                stopped_within_timeout,
            });
        }
        outcomes
    }

    /// Stops whatever still runs: serve processes, the broker, the bank.
    pub async fn stop(mut self) {
        self.stop_serves().await;
        self.nats.stop().await;
        let _ = self.bank.start_kill();
        let _ = self.bank.wait().await;
    }
}

/// `settle bank-sim --port 0` on its own SQLite file; its first stdout line
/// names the address.
async fn start_bank(program: &Path, dir: &Path) -> Result<(Child, String), TortureError> {
    let mut child = Command::new(program)
        .args(["bank-sim", "--port", "0", "--profile", "test"])
        .args(["--concurrent-max", "256"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("banksim.db").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file(dir, "bank-sim")?))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TortureError::Child(format!("starting settle bank-sim: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TortureError::Child("bank-sim stdout is not piped".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(
        Duration::from_millis(BANK_START_TIMEOUT_MS),
        lines.next_line(),
    )
    .await
    .map_err(|_| TortureError::Child("settle bank-sim did not print its port".into()))??
    .unwrap_or_default();
    let address = first
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| TortureError::Child(format!("settle bank-sim said {first:?}")))?
        .to_owned();
    // Keep reading stdout so the simulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, format!("http://{address}")))
}
