//! `tessera outbox`: messages waiting to be sent, and those given up.

use crate::app::App;
use crate::output::{Out, opt, table, time};
use anyhow::Result;
use clap::Args;
use serde_json::json;

#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// Also list the messages that were sent (kept for a week).
    #[arg(long)]
    all: bool,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub async fn run(app: &App, out: Out, args: OutboxArgs) -> Result<()> {
    let messages = app.admin.outbox(args.all, args.limit).await?;
    let value: Vec<_> = messages
        .iter()
        .map(|m| {
            // The text (a code or a link) is never shown.
            json!({
                "id": m.id,
                "channels": m.legs.iter().map(|l| l.channel.as_str()).collect::<Vec<_>>(),
                "recipient": m.recipient(),
                "user": m.username,
                "status": m.status.as_str(),
                "attempts": m.attempts,
                "next_attempt_at": m.next_attempt_at,
                "expires_at": m.not_after,
                "profiles": m
                    .legs
                    .iter()
                    .flat_map(|l| l.profiles.iter().map(move |p| format!("{}:{p}", l.channel.as_str())))
                    .collect::<Vec<_>>(),
                "sent_by": m.sent_by,
                "last_error": m.last_error,
                "created_at": m.created_at,
            })
        })
        .collect();
    out.either(&value, || {
        let rows: Vec<Vec<String>> = messages
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.legs
                        .iter()
                        .map(|l| l.channel.as_str())
                        .collect::<Vec<_>>()
                        .join(" > "),
                    m.recipient().to_string(),
                    opt(&m.username),
                    m.status.as_str().into(),
                    m.attempts.to_string(),
                    time(m.created_at),
                    match m.status {
                        tessera_core::model::OutboxStatus::Sent => opt(&m.sent_by),
                        _ => opt(&m.last_error),
                    },
                ]
            })
            .collect();
        table(
            &[
                "id",
                "channel",
                "recipient",
                "user",
                "status",
                "attempts",
                "queued",
                "sent by / last error",
            ],
            &rows,
        );
    });
    Ok(())
}
