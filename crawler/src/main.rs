//! `crawler`: plan per-ASN samples from routing data and probe them with raw TCP SYNs.
//!
//! Exit codes: 0 ok · 1 runtime failure · 2 bad input or configuration · 3 vantage self-check
//! failed · 130 interrupted.

mod cli;

use clap::Parser;
use std::io::IsTerminal;

fn main() {
    let args = cli::Cli::parse();
    let progress = !args.quiet && std::io::stderr().is_terminal();
    // The S3 client's own retry chatter is below warn: the spool says what matters (what is
    // waiting, the next try) once per attempt.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORT25_LOG").unwrap_or_else(|_| "info,object_store=warn".into());
    if args.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    }
    let code = match cli::run(args.cmd, progress) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crawler: error: {e:#}");
            if cli::is_bad_input(&e) { 2 } else { 1 }
        }
    };
    std::process::exit(code);
}
