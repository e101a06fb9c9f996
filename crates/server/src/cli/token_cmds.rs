//! `tessera token …`

use super::read_secret;
use crate::app::App;
use crate::output::{Out, fields, opt_time, table, time};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use tessera_core::admin::{Actor, EnrollInput, ImportReport, TokenFileFormat, TokenInfo};
use tessera_core::model::{TokenKind, TokenState};
use tessera_otp::import::PskcKey;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Totp,
    Hotp,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum QrFormat {
    /// Draw the QR code in the terminal.
    Terminal,
    /// Write an SVG file (--qr-file).
    Svg,
    /// Write a PNG file (--qr-file).
    Png,
    /// No QR code.
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FileFormat {
    /// PSKC (RFC 6030), as hardware tokens ship and privacyIDEA exports them.
    Pskc,
    /// privacyIDEA's OATH CSV: serial, key (hex), type, digits, counter or time step.
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Enroll a token; prints the otpauth:// URI and its QR code to scan with an authenticator app.
    Enroll {
        /// totp (time-based, the authenticator apps' default) or hotp (counter-based).
        #[arg(value_enum)]
        kind: Kind,
        /// Owner's login name (may be user@realm).
        #[arg(long)]
        user: String,
        /// The owner's realm (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
        /// Seed to import: base32, or an otpauth:// URI. Default: a new random seed.
        #[arg(long, conflicts_with = "secret_hex")]
        secret: Option<String>,
        /// Seed to import in hexadecimal (privacyIDEA's otpkey; RFC 4226's test key
        /// 3132333435363738393031323334353637383930).
        #[arg(long, value_name = "HEX")]
        secret_hex: Option<String>,
        /// Token PIN, typed before (or after) the OTP.
        #[arg(long, conflicts_with = "pin_stdin")]
        pin: Option<String>,
        /// Read the PIN from standard input.
        #[arg(long)]
        pin_stdin: bool,
        /// 6 or 8 (default: the default_otp_length setting).
        #[arg(long)]
        digits: Option<u32>,
        /// SHA1, SHA256 or SHA512 (default: the default_hash setting).
        #[arg(long)]
        algorithm: Option<String>,
        /// TOTP step: 30 or 60 seconds.
        #[arg(long)]
        period: Option<u32>,
        /// HOTP: the next counter of an imported token.
        #[arg(long)]
        counter: Option<u64>,
        /// A note shown in token lists (e.g. the phone it is on).
        #[arg(long)]
        description: Option<String>,
        /// Serial to use instead of a generated one.
        #[arg(long)]
        serial: Option<String>,
        /// How the QR code is shown.
        #[arg(long, value_enum, default_value = "terminal")]
        qr: QrFormat,
        /// Where --qr svg or --qr png writes the image.
        #[arg(long)]
        qr_file: Option<PathBuf>,
    },
    /// Import HOTP and TOTP tokens from a file: PSKC (RFC 6030; plain, encrypted with a
    /// pre-shared AES key, or with a password) or privacyIDEA's OATH CSV (with `# version: 2`,
    /// the first columns name the owner). Prints what happened to each entry; refused entries
    /// are stored not at all. Tokens without an owner are given to users with `tessera token
    /// assign`. Exits 1 when any entry was refused.
    Import {
        /// The file.
        file: PathBuf,
        /// The file's format (default: PSKC when it is XML, else CSV).
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
        /// PSKC: the pre-shared AES-128 key, 32 hexadecimal digits (the token vendor sends it
        /// apart from the file).
        #[arg(long, value_name = "HEX", conflicts_with = "password_stdin")]
        psk_hex: Option<String>,
        /// PSKC: read the password the file's key is derived from (PBKDF2) from standard input
        /// (asked for, not shown, at a terminal).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Give a token without an owner (an imported one) to a user.
    Assign {
        /// The token's serial number (see `tessera token list`).
        serial: String,
        /// The new owner's login name (may be user@realm).
        #[arg(long)]
        user: String,
        /// The owner's realm (default: the default realm, or the one in user@realm).
        #[arg(long)]
        realm: Option<String>,
        /// A token PIN to set at the same time.
        #[arg(long, conflicts_with = "pin_stdin")]
        pin: Option<String>,
        /// Read the token PIN from standard input.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// List tokens.
    List {
        /// Only this user's tokens (may be user@realm).
        #[arg(long)]
        user: Option<String>,
        /// With --user: the user's realm (default: the default realm).
        #[arg(long)]
        realm: Option<String>,
        /// At most this many tokens.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many tokens first (for paging).
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show a token.
    Show {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Enable a token.
    Enable {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Disable a token (it can be enabled again).
    Disable {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Revoke a token for good.
    Revoke {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Reset the token's fail counter (after too many wrong OTPs the token accepts none until
    /// this, or until `failcounter_clear_minutes` passed).
    #[command(name = "reset-failcount", alias = "reset")]
    Reset {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Delete a token.
    Delete {
        /// The token's serial number (see `tessera token list`).
        serial: String,
    },
    /// Set or remove the token PIN.
    Pin {
        /// The token's serial number (see `tessera token list`).
        serial: String,
        /// The new PIN (prefer --pin-stdin: flags are visible in the process list).
        #[arg(long, conflicts_with_all = ["pin_stdin", "remove"])]
        pin: Option<String>,
        /// Read the new PIN from standard input: asked for (twice, not shown) at a terminal, else
        /// the first line.
        #[arg(long, conflicts_with = "remove")]
        pin_stdin: bool,
        /// Remove the PIN (the OTP alone then passes).
        #[arg(long)]
        remove: bool,
    },
    /// Resynchronise from two consecutive OTPs.
    Resync {
        /// The token's serial number (see `tessera token list`).
        serial: String,
        /// An OTP the token shows now.
        otp1: String,
        /// The next OTP it shows (HOTP: press again; TOTP: wait for the next one).
        otp2: String,
    },
    /// Change description, max fail count or windows.
    Set {
        /// The token's serial number (see `tessera token list`).
        serial: String,
        /// A note shown in token lists.
        #[arg(long)]
        description: Option<String>,
        /// Wrong OTPs in a row after which the token accepts none until its fail counter is reset.
        #[arg(long)]
        max_fail: Option<u32>,
        /// HOTP: how many counters ahead of the current one are checked.
        #[arg(long)]
        count_window: Option<u32>,
        /// How far resynchronisation searches (counters for HOTP, time steps for TOTP).
        #[arg(long)]
        sync_window: Option<u32>,
    },
}

fn show(out: Out, t: &TokenInfo) {
    out.either(t, || {
        fields(&[
            ("serial", t.serial.clone()),
            ("type", t.kind.as_str().into()),
            (
                "user",
                format!(
                    "{}{}",
                    t.user,
                    t.realm
                        .as_deref()
                        .map(|r| format!("@{r}"))
                        .unwrap_or_default()
                ),
            ),
            ("description", t.description.clone()),
            ("state", format!("{:?}", t.state).to_lowercase()),
            (
                "algorithm",
                format!(
                    "{} / {} digits{}",
                    t.algorithm,
                    t.digits,
                    if t.kind == TokenKind::Totp {
                        format!(" / {} s", t.period)
                    } else {
                        String::new()
                    }
                ),
            ),
            ("counter", t.counter.to_string()),
            (
                "windows",
                format!("count {} / sync {}", t.count_window, t.sync_window),
            ),
            ("PIN", if t.has_pin { "set" } else { "none" }.into()),
            (
                "fail counter",
                format!(
                    "{} of {}{}",
                    t.fail_count,
                    t.max_fail,
                    if t.locked { " (locked)" } else { "" }
                ),
            ),
            (
                "authentications",
                format!("{} ({} successful)", t.count_auth, t.count_auth_success),
            ),
            ("last success", opt_time(t.last_auth)),
            ("created", time(t.created_at)),
        ])
    });
}

fn read_pin(pin: Option<String>, stdin: bool) -> Result<Option<Zeroizing<String>>> {
    if stdin {
        return Ok(Some(read_secret("token PIN", true)?));
    }
    Ok(pin.map(Zeroizing::new))
}

fn show_report(out: Out, report: &ImportReport) {
    out.either(report, || {
        let rows: Vec<Vec<String>> = report
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.line.to_string(),
                    e.serial.clone().unwrap_or_else(|| "-".into()),
                    e.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                    e.result.to_string(),
                    match (&e.reason, &e.owner) {
                        (Some(reason), _) => reason.clone(),
                        (None, Some(owner)) => format!("owner {owner}"),
                        (None, None) => "no owner yet (tessera token assign)".into(),
                    },
                ]
            })
            .collect();
        table(&["line", "serial", "type", "result", "detail"], &rows);
        outln!(
            "\n{} imported, {} refused.",
            report.imported,
            report.refused
        );
    });
}

pub async fn run(app: &App, out: Out, cmd: TokenCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    match cmd {
        TokenCmd::Import {
            file,
            format,
            psk_hex,
            password_stdin,
        } => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let text = String::from_utf8(text)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?;
            let key = if let Some(hex) = psk_hex {
                let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
                match data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()) {
                    Ok(k) if k.len() == 16 => PskcKey::PreShared(Zeroizing::new(k)),
                    _ => bail!("--psk-hex: an AES-128 key is 32 hexadecimal digits"),
                }
            } else if password_stdin {
                PskcKey::Password(read_secret("PSKC password", false)?)
            } else {
                PskcKey::None
            };
            let format = format.map(|f| match f {
                FileFormat::Pskc => TokenFileFormat::Pskc,
                FileFormat::Csv => TokenFileFormat::Csv,
            });
            let report = admin.import_token_file(&actor, &text, format, &key).await?;
            show_report(out, &report);
            if report.refused > 0 {
                bail!(
                    "{} of {} entries refused (nothing was stored for them)",
                    report.refused,
                    report.entries.len()
                );
            }
        }
        TokenCmd::Assign {
            serial,
            user,
            realm,
            pin,
            pin_stdin,
        } => {
            let pin = read_pin(pin, pin_stdin)?;
            let info = admin
                .assign_token(&actor, &serial, &user, realm.as_deref(), pin)
                .await?;
            show(out, &info);
        }
        TokenCmd::Enroll {
            kind,
            user,
            realm,
            secret,
            secret_hex,
            pin,
            pin_stdin,
            digits,
            algorithm,
            period,
            counter,
            description,
            serial,
            qr,
            qr_file,
        } => {
            if matches!(qr, QrFormat::Svg | QrFormat::Png) && qr_file.is_none() {
                bail!("--qr svg and --qr png need --qr-file PATH");
            }
            let input = EnrollInput {
                kind: match kind {
                    Kind::Totp => TokenKind::Totp,
                    Kind::Hotp => TokenKind::Hotp,
                },
                user,
                realm,
                secret: secret.map(Zeroizing::new),
                secret_hex: secret_hex.map(Zeroizing::new),
                pin: read_pin(pin, pin_stdin)?,
                digits,
                algorithm,
                period,
                counter,
                description,
                serial,
            };
            let enrolled = admin.enroll(&actor, input).await?;
            match (qr, &qr_file) {
                (QrFormat::Svg, Some(path)) => {
                    std::fs::write(path, tessera_otp::qr_svg(&enrolled.uri)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                (QrFormat::Png, Some(path)) => {
                    std::fs::write(path, tessera_otp::qr_png(&enrolled.uri, 8)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                _ => {}
            }
            if out.json {
                out.json(&enrolled);
                return Ok(());
            }
            outln!(
                "Enrolled {} token {} for {}.",
                enrolled.token.kind.as_str(),
                enrolled.token.serial,
                enrolled.token.user
            );
            outln!("otpauth URI: {}", enrolled.uri);
            outln!("secret (base32): {}", enrolled.secret);
            match (qr, &qr_file) {
                (QrFormat::Terminal, _) => {
                    outln!("Scan with an authenticator app:");
                    outln!("{}", tessera_otp::qr_terminal(&enrolled.uri)?);
                }
                (QrFormat::Svg | QrFormat::Png, Some(path)) => {
                    outln!("QR code written to {}", path.display());
                }
                _ => {}
            }
        }
        TokenCmd::List {
            user,
            realm,
            limit,
            offset,
        } => {
            let tokens = admin
                .list_tokens(user.as_deref(), realm.as_deref(), limit, offset)
                .await?;
            out.either(&tokens, || {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.serial.clone(),
                            t.kind.as_str().into(),
                            t.user.clone(),
                            format!("{:?}", t.state).to_lowercase(),
                            if t.has_pin { "yes" } else { "no" }.into(),
                            format!("{}/{}", t.fail_count, t.max_fail),
                            opt_time(t.last_auth),
                            t.description.clone(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "serial",
                        "type",
                        "user",
                        "state",
                        "pin",
                        "fails",
                        "last success",
                        "description",
                    ],
                    &rows,
                );
            });
        }
        TokenCmd::Show { serial } => show(out, &admin.get_token(&serial).await?),
        TokenCmd::Enable { serial } => show(
            out,
            &admin
                .set_token_state(&actor, &serial, TokenState::Enabled)
                .await?,
        ),
        TokenCmd::Disable { serial } => show(
            out,
            &admin
                .set_token_state(&actor, &serial, TokenState::Disabled)
                .await?,
        ),
        TokenCmd::Revoke { serial } => show(
            out,
            &admin
                .set_token_state(&actor, &serial, TokenState::Revoked)
                .await?,
        ),
        TokenCmd::Reset { serial } => show(out, &admin.reset_token(&actor, &serial).await?),
        TokenCmd::Delete { serial } => {
            admin.delete_token(&actor, &serial).await?;
            out.either(&serde_json::json!({"deleted": serial}), || {
                outln!("Deleted token {serial}.")
            });
        }
        TokenCmd::Pin {
            serial,
            pin,
            pin_stdin,
            remove,
        } => {
            let pin = if remove {
                None
            } else {
                match read_pin(pin, pin_stdin)? {
                    Some(p) => Some(p),
                    None => bail!("give --pin-stdin (recommended), --pin or --remove"),
                }
            };
            show(out, &admin.set_token_pin(&actor, &serial, pin).await?);
        }
        TokenCmd::Resync { serial, otp1, otp2 } => show(
            out,
            &admin.resync_token(&actor, &serial, &otp1, &otp2).await?,
        ),
        TokenCmd::Set {
            serial,
            description,
            max_fail,
            count_window,
            sync_window,
        } => {
            if description.is_none()
                && max_fail.is_none()
                && count_window.is_none()
                && sync_window.is_none()
            {
                bail!(
                    "nothing to change: give --description, --max-fail, --count-window or --sync-window"
                );
            }
            show(
                out,
                &admin
                    .update_token(
                        &actor,
                        &serial,
                        description,
                        max_fail,
                        count_window,
                        sync_window,
                    )
                    .await?,
            )
        }
    }
    Ok(())
}
