//! `strata-loadgen`: parse the command line, run the steps, print the table (or the JSON object)
//! and exit 0, or print what went wrong on stderr and exit 1. Usage errors exit 2 (clap).

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use strata_loadgen::cli::Args;
use strata_loadgen::report::StepReport;
use strata_loadgen::run;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        // A usage error like clap's own: the message, the usage line, exit status 2.
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit();
    }
    let table = !args.json;
    let mut header_due = table;
    let result = run::run(&args, |step| {
        if table {
            // Each row as soon as its step is done, so that a long sweep shows its progress. The
            // header waits for the first row: a run that fails prints no empty table.
            let mut out = std::io::stdout().lock();
            if std::mem::take(&mut header_due) {
                let _ = writeln!(out, "{}", StepReport::TABLE_HEADER);
            }
            let _ = writeln!(out, "{}", step.table_row());
            if let Some(details) = step.details() {
                let _ = writeln!(out, "{details}");
            }
            let _ = out.flush();
        }
    });
    match result {
        Ok(report) => {
            if table {
                match report.max_rate_below_loss {
                    Some(r) => println!("max rate below {}% loss: {r:.0}/s", args.loss_threshold * 100.0),
                    None => println!("no step had loss below {}%", args.loss_threshold * 100.0),
                }
            } else {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("strata-loadgen: cannot write the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strata-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
