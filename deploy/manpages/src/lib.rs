//! The man pages of the Debian package, rendered from the clap commands of `strata` and
//! `strata-loadgen` (clap_mangen), with the sections clap cannot know (files, signals,
//! capabilities, exit status) written here.

use std::io;

use clap_mangen::Man;

/// The manual's section: both programs are run by the system's administrator.
const SECTION: &str = "8";

/// The sections of strata.8 after the generated ones.
const STRATA_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/strata/strata.toml\fR
The configuration file of the packaged service (\fB\-\-config\fR); every key is also a flag of
\fBstrata serve\fR, the flag winning.
.TP
\fI/run/strata/control.sock\fR
The control socket that \fBstrata status\fR reads: mode 0660 in a directory of mode 0750, both
owned by the user strata runs as and its group, whatever the umask. Members of that group (the
package's \fIstrata\fR group) may read the status.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Reads the configuration file again. A file with an error changes nothing (the error is logged).
The log level and format are applied at once, and the NTS certificate and key are read again;
every other changed setting is named in the log as needing a restart.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR, \fBSIGUSR1\fR
Shut down cleanly: the XDP program is detached, the control socket removed and the final counters
logged. A second signal during the shutdown ends the process at once.
.SH PRIVILEGES
\fBstrata serve\fR started as root does what needs privileges first (loads and attaches the XDP
program, binds the AF_XDP or UDP sockets on port 123) and then, when \fBuser\fR is set, runs as
that user with no capability left, but CAP_SYS_TIME in the control thread when
\fBdiscipline_system\fR is on. The XDP path needs CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON and
CAP_NET_RAW at start, and CAP_IPC_LOCK or a RLIMIT_MEMLOCK large enough for its UMEM; the socket
path CAP_NET_BIND_SERVICE for a port below 1024.
.SH SYSTEMD
With \fBType=notify\fR, strata tells systemd READY=1 once it serves, a STATUS= line whenever
its synchronization state changes, and WATCHDOG=1 at half the interval of \fBWatchdogSec=\fR.
.SH EXIT STATUS
0 after a clean shutdown, 1 when the server failed at run time (a bind error, a responder thread
that died), 2 for bad flags or a bad configuration (the message on standard error).
.SH SEE ALSO
\fBstrata\-loadgen\fR(8), \fBsystemd.service\fR(5), \fBcapabilities\fR(7)
"#;

/// strata.8: the command, then the options of each subcommand under its own heading.
pub fn strata_page() -> io::Result<Vec<u8>> {
    let mut command = strata::daemon::cli::command().disable_help_subcommand(true);
    command.build();
    let mut page = Vec::new();
    let man = Man::new(command.clone())
        .section(SECTION)
        .manual("System Manager's Manual")
        .source(format!("strata {}", env!("CARGO_PKG_VERSION")));
    // Not `render`: its list of subcommands points at pages of their own (strata-serve(8)),
    // while here they are all in this one page.
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in command.get_subcommands() {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let line = format!(
            ".TP\n\\fBstrata {}\\fR\n{}\n",
            sub.get_name(),
            about.replace('-', "\\-")
        );
        page.extend_from_slice(line.as_bytes());
    }
    for sub in command.get_subcommands() {
        // clap takes headings as &'static str; a one-shot program can leak a few bytes.
        let heading: &'static str = format!("OPTIONS OF strata {}", sub.get_name()).leak();
        let sub = sub.clone().mut_args(|a| a.help_heading(heading));
        Man::new(sub).render_options_section(&mut page)?;
    }
    page.extend_from_slice(STRATA_EXTRA.as_bytes());
    Ok(page)
}

/// strata-loadgen.8.
pub fn loadgen_page() -> io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    Man::new(strata_loadgen::cli::Args::command())
        .section(SECTION)
        .manual("System Manager's Manual")
        .source(format!("strata {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    page.extend_from_slice(b".SH SEE ALSO\n\\fBstrata\\fR(8)\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of the command and of its subcommands, as roff writes it (`\-\-name`).
    fn flags(command: &clap::Command) -> Vec<String> {
        let mut out: Vec<String> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .map(|long| format!("\\-\\-{}", long.replace('-', "\\-")))
            .collect();
        for sub in command.get_subcommands() {
            out.extend(flags(sub));
        }
        out
    }

    #[test]
    fn strata_8_documents_every_flag_of_every_subcommand() {
        let page = String::from_utf8(strata_page().unwrap()).unwrap();
        assert!(page.contains(".TH strata 8"), "{}", &page[..200]);
        let flags = flags(&strata::daemon::cli::command());
        assert!(flags.len() > 30, "{flags:?}");
        for flag in flags {
            assert!(page.contains(&flag), "{flag} missing from strata.8");
        }
        for heading in [
            ".SH \"OPTIONS OF STRATA SERVE\"",
            ".SH \"OPTIONS OF STRATA STATUS\"",
            ".SH COMMANDS",
            ".SH SIGNALS",
            ".SH FILES",
        ] {
            assert!(page.contains(heading), "{heading} missing from strata.8");
        }
    }

    #[test]
    fn strata_loadgen_8_documents_every_flag() {
        use clap::CommandFactory;
        let page = String::from_utf8(loadgen_page().unwrap()).unwrap();
        assert!(page.contains(".TH strata-loadgen 8"), "{}", &page[..200]);
        for flag in flags(&strata_loadgen::cli::Args::command()) {
            assert!(page.contains(&flag), "{flag} missing from strata-loadgen.8");
        }
    }
}
