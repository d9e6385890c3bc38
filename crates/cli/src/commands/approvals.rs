//! `settle approvals list|approve|reject`: maker-checker from the command line, as
//! a client of a running API. The checker is the ops key given (`SETTLE_API_KEY`,
//! or `--key`), never the database's owner, so the API's rules hold exactly as in
//! the console: a second ops key, never the requester's; once; before expiry.
//! An API refusal exits 2 with the API's code.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::CliError;

#[derive(Subcommand, Debug)]
pub enum ApprovalsCommand {
    /// Lists approvals, newest first (default: pending ones).
    List(ListArgs),
    /// Approves a pending approval; its action runs then, once.
    Approve(ApproveArgs),
    /// Rejects a pending approval, with a reason.
    Reject(RejectArgs),
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The API's base URL.
    #[arg(long, env = "SETTLE_API_URL", default_value = "http://127.0.0.1:8000")]
    api_url: String,
    /// An ops key (prefer the environment variable: arguments show in `ps`).
    #[arg(long, env = "SETTLE_API_KEY", hide_env_values = true)]
    key: String,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// pending, approved, rejected, done, failed, or all.
    #[arg(long, default_value = "pending")]
    state: String,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The approval's id (`apr_…`).
    #[arg(long)]
    id: String,
    /// The body hash you reviewed (`list` shows it); another stored one is refused.
    #[arg(long)]
    body_hash: Option<String>,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    id: String,
    #[arg(long)]
    reason: String,
}

/// How long one call to the API may take.
const REQUEST_TIMEOUT_MS: u64 = 60_000;

pub async fn run(command: ApprovalsCommand) -> anyhow::Result<()> {
    let answer = match command {
        ApprovalsCommand::List(args) => {
            let state = if args.state == "all" { "" } else { &args.state };
            let path = format!("/v1/approvals?limit=100&state={state}");
            call(&args.client, reqwest::Method::GET, &path, None).await?
        }
        ApprovalsCommand::Approve(args) => {
            let body = match &args.body_hash {
                Some(hash) => json!({ "body_hash": hash }),
                None => json!({}),
            };
            let path = format!("/v1/approvals/{}/approve", segment(&args.id)?);
            call(&args.client, reqwest::Method::POST, &path, Some(body)).await?
        }
        ApprovalsCommand::Reject(args) => {
            let path = format!("/v1/approvals/{}/reject", segment(&args.id)?);
            let body = json!({ "reason": args.reason });
            call(&args.client, reqwest::Method::POST, &path, Some(body)).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// An approval id as a path segment: `apr_` and hex only.
fn segment(id: &str) -> anyhow::Result<&str> {
    if id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(id)
    } else {
        Err(CliError::new("invalid_input", "an approval id is apr_ followed by hex").into())
    }
}

async fn call(
    client: &ClientArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()?;
    let url = format!("{}{path}", client.api_url.trim_end_matches('/'));
    let mut request = http.request(method, &url).bearer_auth(&client.key);
    if let Some(body) = body {
        // One Idempotency-Key per command: a retried network call never decides twice.
        request = request
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = answer["code"]
            .as_str()
            .unwrap_or("internal_error")
            .to_owned();
        let message = answer["message"]
            .as_str()
            .map_or_else(|| format!("the API answered {status}"), str::to_owned);
        let reason = answer["details"]["reason"].as_str();
        let message = match reason {
            Some(reason) => format!("{message} ({reason})"),
            None => message,
        };
        return Err(CliError::new(code, message).into());
    }
    Ok(answer)
}
