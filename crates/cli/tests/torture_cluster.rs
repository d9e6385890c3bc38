//! The cluster test, as CI runs it: `settle bank-sim`, a private `nats-server
//! -js` and four `settle serve` processes with split roles (api; dispatcher ×2;
//! fees,payroll,reconciler,expiry) over one PostgreSQL schema, under a minute
//! of load through the HTTP API while seeded random serve processes and the
//! broker are SIGKILLed and restarted. Then it quiesces, stops every process
//! with SIGTERM and checks the stores: every outbox row delivered once to every
//! consumer of its stream and to no other, the history read model equal to the
//! core, the fee days and the payroll month settled, the ledger balanced. The
//! long version is `settle torture cluster --minutes 30` (docs/reliability.md).

use torture::cluster::{ClusterPlan, run};

/// The test PostgreSQL server; CI always has one.
async fn postgres_url() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432/test".to_owned());
    match store::Store::connect(&url).await {
        Ok(admin) => {
            admin.close().await;
            Some(url)
        }
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: PostgreSQL at {url} is unreachable ({error})");
            None
        }
        Err(error) => panic!("PostgreSQL at {url} is unreachable in CI: {error}"),
    }
}

fn nats_server_available() -> bool {
    let binary = torture::nats_server::binary();
    if binary.exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI",
        binary.display()
    );
    eprintln!("skipping: no {}", binary.display());
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_serve_processes_killed_under_load_deliver_every_event_once_to_its_own_stream() {
    let Some(url) = postgres_url().await else {
        return;
    };
    if !nats_server_available() {
        return;
    }
    let mut plan = ClusterPlan::new(env!("CARGO_BIN_EXE_settle").into(), &url);
    plan.seed = 20_261_203;
    plan.load_ms = 60_000;
    let summary = run(&plan, &|line| eprintln!("{line}")).await.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&summary).unwrap());
    let kills: u64 = summary.kills.values().sum();
    eprintln!(
        "cluster: {kills} serve kills {:?}, {} broker kills, events per stream {}, \
         lost {}, doubled {}, wrong-stream {}, peak connections {}",
        summary.kills,
        summary.broker_kills,
        summary.streams,
        summary.events_lost,
        summary.effects_doubled,
        summary.wrong_stream,
        summary.connections_peak
    );
    let violated: Vec<_> = summary.checks.iter().filter(|c| !c.holds).collect();
    assert!(
        violated.is_empty(),
        "seed {}: {violated:#?}\nreplay: {}\nkept at {:?}",
        summary.seed,
        summary.replay,
        summary.kept_at
    );
    // The run really killed processes mid-load and really carried load.
    assert!(kills + summary.broker_kills >= 8, "{summary:?}");
    assert!(
        summary.load["ledger_transfers_ok"].as_u64() > Some(100),
        "{summary:?}"
    );
    assert!(
        summary.load["channel_transfers_accepted"].as_u64() > Some(10),
        "{summary:?}"
    );
}
