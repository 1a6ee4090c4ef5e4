//! The Debian package that `make deb` builds (`make test` builds it before the tests run): its
//! control data and files (dpkg-deb), and, as root on a machine without strata installed, a
//! real install with apt (user and group made, unit, binaries, the packaged configuration
//! serving as the package's user) and a purge that leaves nothing behind. The package is purged on every exit
//! path of the test.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use strata_test_support::*;

/// The package `make deb` made: target/debian/strata_*.deb (under $CARGO_TARGET_DIR if set).
fn package() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("debian");
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("strata_") && name.ends_with(".deb")
        })
        .collect();
    // The newest, if several versions were built.
    debs.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn stdout(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn built_package() -> Option<PathBuf> {
    let deb = package();
    available("the Debian package (make deb builds it)", deb.is_some()).then(|| deb.unwrap())
}

#[test]
#[ignore = "needs the package that make deb builds (make test builds it first)"]
fn the_package_holds_the_programs_unit_configuration_and_manuals() {
    let Some(deb) = built_package() else {
        return;
    };
    let deb = deb.to_str().unwrap();
    let info = stdout("dpkg-deb", &["-I", deb]);
    for expected in [
        "Package: strata",
        "Section: net",
        "Depends: adduser, libc6",
        "postinst",
        "postrm",
        "prerm",
    ] {
        assert!(info.contains(expected), "{expected:?} in\n{info}");
    }
    let files = stdout("dpkg-deb", &["-c", deb]);
    for path in [
        "./usr/sbin/strata",
        "./usr/sbin/strata-loadgen",
        "./usr/lib/systemd/system/strata.service",
        "./etc/strata/strata.toml",
        "./usr/share/man/man8/strata.8.gz",
        "./usr/share/man/man8/strata-loadgen.8.gz",
        "./usr/share/doc/strata/copyright",
        "./usr/sbin/strata-anycast-health",
        "./usr/lib/systemd/system/strata-anycast-health.service",
        "./usr/share/doc/strata/examples/bird/bird.conf",
        "./usr/share/doc/strata/examples/grafana/strata.json",
        "./usr/share/doc/strata/examples/prometheus/strata-alerts.yml",
        "./usr/share/doc/strata/examples/kubernetes/strata.yaml",
        "./usr/share/doc/strata/examples/kubernetes/servicemonitor.yaml",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} in\n{files}"
        );
    }
    let unpacked = TempDir::new("deb");
    let root = unpacked.0.to_str().unwrap();
    stdout("dpkg-deb", &["-R", deb, root]);
    let file = |p: &str| fs::read_to_string(Path::new(root).join(p)).unwrap();
    assert_eq!(file("DEBIAN/conffiles").trim(), "/etc/strata/strata.toml");
    assert_eq!(
        file("etc/strata/strata.toml"),
        include_str!("../deploy/strata.toml")
    );
    assert_eq!(
        file("usr/lib/systemd/system/strata.service"),
        include_str!("../deploy/strata.service")
    );
    assert!(file("DEBIAN/postinst").contains("adduser --system"));
    assert!(file("DEBIAN/postrm").contains("deluser --system"));
    // The manual is the clap definition's, and gzip-compressed as Debian wants.
    let man = stdout(
        "sh",
        &["-c", &format!("gzip -dc {root}/usr/share/man/man8/strata.8.gz")],
    );
    assert!(
        man.contains(".TH strata 8") && man.contains("\\-\\-rate\\-limit"),
        "{man}"
    );
    let version = stdout(&format!("{root}/usr/sbin/strata"), &["--version"]);
    assert!(version.starts_with("strata "), "{version}");
}

/// What a machine without strata has: nothing of the package's.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if run("getent", &["passwd", "strata"]).status.success() {
        found.push("user strata".into());
    }
    if run("getent", &["group", "strata"]).status.success() {
        found.push("group strata".into());
    }
    let status = run("dpkg-query", &["-W", "-f=${Status}", "strata"]);
    if status.status.success() && !String::from_utf8_lossy(&status.stdout).contains("not-installed") {
        found.push(format!(
            "package strata ({})",
            String::from_utf8_lossy(&status.stdout)
        ));
    }
    for path in [
        "/usr/sbin/strata",
        "/usr/sbin/strata-loadgen",
        "/usr/lib/systemd/system/strata.service",
        "/etc/strata",
        "/var/log/strata",
        "/usr/share/man/man8/strata.8.gz",
    ] {
        if Path::new(path).exists() {
            found.push(path.into());
        }
    }
    found
}

/// Removes a directory the test made, when the test ends.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Purges the package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = run("dpkg", &["--purge", "strata"]);
        if !out.status.success() {
            eprintln!("dpkg --purge strata: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
#[ignore = "needs root, dpkg and a machine without strata installed (make test runs it)"]
fn install_serve_as_the_package_user_and_purge_leave_nothing_behind() {
    if !available("root", is_root()) {
        return;
    }
    let Some(deb) = built_package() else {
        return;
    };
    let before = leftovers();
    if !available(
        &format!("a machine without strata's package, user or files (found {before:?})"),
        before.is_empty(),
    ) {
        return;
    }
    let purge = Purge;
    // As an operator installs it; its dependencies are all installed here already (make test's
    // Debian packages), so apt fetches nothing.
    let out = run(
        "apt-get",
        &["install", "-y", "--no-install-recommends", deb.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "apt-get install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The user and group, system ones that cannot log in.
    let passwd = stdout("getent", &["passwd", "strata"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    let gid: u32 = fields[3].parse().unwrap();
    assert!(uid < 1000, "not a system user: {passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let group = stdout("getent", &["group", "strata"]);
    assert!(group.starts_with(&format!("strata:x:{gid}:")), "{group}");
    assert!(Path::new("/usr/lib/systemd/system/strata.service").exists());
    assert!(stdout("/usr/sbin/strata-loadgen", &["--help"]).contains("--target"));
    // The unit is installed disabled: the operator switches the service on.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/strata.service").exists());

    // The packaged configuration as the unit runs it (its `user` is the package's user), on a
    // port and a control socket of its own (in /run, as /run/strata: other strata servers on
    // this machine may be using the default).
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let run_dir = PathBuf::from(format!("/run/strata-pkgtest-{}", std::process::id()));
    let _run_dir = RemoveDirOnDrop(run_dir.clone());
    let control = run_dir.join("control.sock");
    let server = Command::new("/usr/sbin/strata")
        .args([
            "serve",
            "--config",
            "/etc/strata/strata.toml",
            "--listen",
            &listen,
        ])
        .args([
            "--local-stratum",
            "3",
            "--metrics",
            "off",
            "--cores",
            "0",
            "--control",
        ])
        .arg(&control)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let control = control.as_path();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ntp_query(listen.parse().unwrap(), Duration::from_millis(200)).is_none() {
        assert!(Instant::now() < deadline, "the packaged strata does not answer");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let meta = fs::symlink_metadata(control).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (uid, gid, 0o660));
    let status = stdout(
        "/usr/sbin/strata",
        &["status", "--control", control.to_str().unwrap()],
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Stratum") && l.ends_with(": 3")),
        "{status}"
    );
    let proc_status = fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    assert!(
        proc_status.contains(&format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}")),
        "{proc_status}"
    );
    // SAFETY: kill with our own child's pid and a standard signal.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let exit = server.wait_with_output().unwrap();
    assert!(exit.status.success(), "{}", String::from_utf8_lossy(&exit.stderr));
    assert!(!control.exists(), "the control socket was left behind");

    drop(purge);
    let after = leftovers();
    assert!(after.is_empty(), "left behind by the purge: {after:?}");
}
