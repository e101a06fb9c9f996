//! How the CLI prints: aligned tables and key/value lists for people, JSON for scripts.

use serde::Serialize;
use std::io::Write;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Prints to standard output like `println!`, through [`write_out`].
macro_rules! outln {
    () => {
        $crate::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints to standard output like `print!`, through [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_out(format_args!($($arg)*))
    };
}

/// Writes to standard output. A reader that went away (`tessera user list | head -1`) ends the
/// process quietly and successfully, as the reader wanted no more; `println!` would panic with
/// "Broken pipe". Any other write error ends it with a message.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        match serde_json::to_string_pretty(value) {
            Ok(s) => outln!("{s}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    }

    /// Prints `value` as JSON in JSON mode, else runs `human`.
    pub fn either<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce()) {
        if self.json {
            self.json(value);
        } else {
            human();
        }
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        outln!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row.clone());
    }
    if rows.is_empty() {
        outln!("(none)");
    }
}

/// Prints `key: value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        outln!("{k:<w$}  {v}");
    }
}

/// Unix seconds as RFC 3339 UTC.
pub fn time(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

pub fn opt_time(secs: Option<i64>) -> String {
    secs.map(time).unwrap_or_else(|| "-".into())
}

pub fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time into Unix seconds.
pub fn parse_date(s: &str) -> Result<i64, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| format!("'{s}' is not a date (YYYY-MM-DD or RFC 3339)"))
}

/// Parses a duration like `30m`, `12h`, `7d`, `90s` into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 90s, 30m, 12h, 7d)"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}' is not a duration (e.g. 90s, 30m, 12h, 7d)")),
    };
    Ok(n.saturating_mul(mult))
}

/// What an unlock removed (`tessera user unlock`, `tessera admin unlock`), or with `shown_only`
/// what is on record (`tessera user lockout`).
pub fn lockout(out: Out, report: &tessera_core::admin::Unlocked, shown_only: bool) {
    let who = match &report.realm {
        Some(realm) => format!("'{}' in realm '{realm}'", report.user),
        None => format!("administrator '{}'", report.user),
    };
    out.either(report, || {
        if report.cleared.is_empty() {
            outln!("{who}: no failed attempts on record.");
            return;
        }
        let verb = match (shown_only, report.was_locked) {
            (true, true) => "is locked",
            (true, false) => "has failed attempts on record, not locked",
            (false, true) => "was locked and is unlocked now",
            (false, false) => "was not locked; its failed attempts are forgotten",
        };
        outln!("{who} {verb}:");
        let rows: Vec<Vec<String>> = report
            .cleared
            .iter()
            .map(|i| {
                vec![
                    i.login.clone(),
                    i.budget.clone(),
                    i.password_fails.to_string(),
                    i.otp_fails.to_string(),
                    time(i.since),
                    opt_time(i.locked_until),
                ]
            })
            .collect();
        table(
            &[
                "name",
                "counts",
                "password failures",
                "code failures",
                "since",
                "locked until",
            ],
            &rows,
        );
    });
}

/// What an unlock removed.
pub fn unlocked(out: Out, report: &tessera_core::admin::Unlocked) {
    lockout(out, report, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(parse_date("1970-01-02"), Ok(86_400));
        assert_eq!(parse_date("2001-09-09T01:46:40Z"), Ok(1_000_000_000));
        assert!(parse_date("tomorrow").is_err());
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("7w").is_err());
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
    }
}
