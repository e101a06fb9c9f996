//! What a new administrator meets in the first ten minutes, met the way they meet it: the
//! README's commands on a real terminal (tmux), the server's start-up and its log written to a
//! file, every command's `--help`, and the first sign-in in Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Every command with its path (`[]` for `tessera` itself), global options included.
fn commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut root = tessera_server::cli::command();
    // Building hands the global options down to every command.
    root.build();
    let mut out = Vec::new();
    walk(&root, Vec::new(), &mut out);
    out
}

#[test]
fn every_option_of_every_command_has_a_help_line() {
    let all = commands();
    assert!(all.len() > 60, "{} commands", all.len());
    let mut missing = Vec::new();
    for (path, cmd) in &all {
        let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
        assert!(out.status.success(), "tessera {path:?} --help");
        let help = String::from_utf8(out.stdout).unwrap();
        // The options every command takes stand apart from the command's own.
        if !path.is_empty() {
            let (own, global) = help.split_once("\nGlobal options:\n").unwrap_or_else(|| {
                panic!(
                    "tessera {} --help has no global options heading:\n{help}",
                    path.join(" ")
                )
            });
            assert!(
                global.contains("--data-dir") && !own.contains("--data-dir"),
                "{help}"
            );
        }
        if cmd.get_about().is_none() {
            missing.push(format!("tessera {} (the command itself)", path.join(" ")));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                let name = arg
                    .get_long()
                    .map(|l| format!("--{l}"))
                    .unwrap_or_else(|| format!("<{}>", arg.get_id()));
                assert!(
                    arg.get_long().is_none() || help.contains(&name),
                    "{name} is not in `tessera {} --help`",
                    path.join(" ")
                );
                missing.push(format!("tessera {} {name}", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} without help:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// `serve` prints no tables, so it does not offer `--json`; given anyway, it is refused with
/// what to use instead.
#[test]
fn serve_offers_no_json_flag_and_refuses_it() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(!help.contains("--json"), "{help}");
    assert!(help.contains("--log-format"), "{help}");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--log-format json"), "{err}");
    assert!(
        !dir.path().join("tessera.db").exists(),
        "nothing was created"
    );
    // Elsewhere --json goes before or after the command.
    let user_list = Command::new(BIN)
        .args(["user", "list", "--json", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(user_list.stdout).unwrap().trim(), "[]");
}
