//! The switch of user as `discipline_system` needs it, without touching the clock: one thread
//! asks to keep CAP_SYS_TIME, the main thread switches the process to nobody, and afterwards
//! that thread holds CAP_SYS_TIME alone (permitted and effective) while every other thread holds
//! nothing. The switch cannot be undone, so it runs in a child: this test binary run again.

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use strata::sys::privilege::{self, Capability};
use strata_test_support::*;

const CHILD: &str = "STRATA_PRIVILEGE_KEEP_CHILD";

/// In the child: the switch, then each thread's credentials as lines `NAME UID PERMITTED EFFECTIVE`.
fn child() {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (settled_tx, settled_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let keeper = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            privilege::keep_in_this_thread(Capability::SysTime).unwrap();
            ready_tx.send(()).unwrap();
            // The control thread's loop: settle until the switch has happened.
            loop {
                privilege::settle_this_thread().unwrap();
                let creds = privilege::thread_credentials().unwrap();
                let me = creds.iter().find(|c| c.name == "keeper").unwrap();
                if me.uids[0] != 0 && me.permitted == Capability::SysTime.bit() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            settled_tx.send(()).unwrap();
            let _ = done_rx.recv();
        })
        .unwrap();
    let bystander = std::thread::Builder::new()
        .name("bystander".into())
        .spawn(|| std::thread::sleep(Duration::from_secs(2)))
        .unwrap();
    ready_rx.recv().unwrap();
    let nobody = privilege::lookup_user("nobody").unwrap();
    privilege::switch_user(&nobody).unwrap();
    settled_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the keeper settled");
    for c in privilege::thread_credentials().unwrap() {
        println!("{} {} {:x} {:x}", c.name, c.uids[0], c.permitted, c.effective);
    }
    done_tx.send(()).unwrap();
    keeper.join().unwrap();
    bystander.join().unwrap();
}

#[test]
#[ignore = "needs root (make test runs it)"]
fn one_thread_keeps_cap_sys_time_and_the_others_nothing() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    if !available("root", is_root()) {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "one_thread_keeps_cap_sys_time_and_the_others_nothing",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sys_time = format!("{:x}", Capability::SysTime.bit());
    let threads: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f.len() == 4 && f[1].parse::<u32>().is_ok())
        .collect();
    assert!(threads.len() >= 3, "{stdout}");
    for t in &threads {
        assert_eq!(t[1], "65534", "{stdout}");
        let expected = if t[0] == "keeper" { sys_time.as_str() } else { "0" };
        assert_eq!((t[2], t[3]), (expected, expected), "thread {}: {stdout}", t[0]);
    }
    assert!(threads.iter().any(|t| t[0] == "keeper"), "{stdout}");
}
