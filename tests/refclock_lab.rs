//! strata as a stratum-1 server from a reference clock, in network namespaces this test makes
//! (removed on every exit path by strata-test-support's `Netns`):
//!
//! - SHM: a writer this test implements from the documented ntpshm layout (`struct shmTime`,
//!   key 0x4e545030 + unit, mode 1 with the count/valid protocol, as gpsd writes it) feeds the
//!   system clock's time once a second; strata with `--refclock "shm:N refid GPS"` selects it,
//!   logs "synchronized to 127.127.28.N stratum 1", ntpdig in a client namespace sees stratum 1,
//!   a raw query sees refid GPS, `strata status --json` lists the refclock as the selected source;
//!   when the writer stops, the refclock ages out (reach 0, unreachable).
//! - SOCK: a writer of chrony's `struct sock_sample` sends to the socket strata binds, with the
//!   same result.
//! - gpsd: gpsd from Debian (gpsfake, an NMEA log of the current time the test writes) writes SHM
//!   unit 0 and strata takes it from there.
//!
//! System V shared memory belongs to the IPC namespace, which `ip netns exec` leaves alone: the
//! writer in this process and strata in its network namespace see the same segment. Each test
//! uses a unit of its own (from its pid), and removes the segment at the end.
//!
//! `#[ignore]`d under a plain `cargo test` (root, namespaces, ntpdig, gpsd); `make test` runs them.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strata_test_support::*;

/// `struct shmTime` as ntpd's documentation gives it (C layout, 64-bit time_t).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct ShmTime {
    mode: i32,
    count: i32,
    clock_sec: i64,
    clock_usec: i32,
    receive_sec: i64,
    receive_usec: i32,
    leap: i32,
    precision: i32,
    nsamples: i32,
    valid: i32,
    clock_nsec: u32,
    receive_nsec: u32,
    dummy: [i32; 8],
}

const SHM_KEY_BASE: i32 = 0x4e54_5030;

fn realtime_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The segment of one unit, removed when dropped.
struct Segment {
    id: i32,
    ptr: *mut ShmTime,
}

// SAFETY: the mapping stays until Drop; the writer thread is its only user in this process.
unsafe impl Send for Segment {}

impl Segment {
    fn create(unit: u8) -> Segment {
        // SAFETY: plain integer arguments.
        let id = unsafe {
            libc::shmget(
                SHM_KEY_BASE + unit as i32,
                std::mem::size_of::<ShmTime>(),
                libc::IPC_CREAT | 0o666,
            )
        };
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        // SAFETY: the kernel picks the address; the result is checked.
        let ptr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        assert!(ptr as isize != -1, "shmat: {}", std::io::Error::last_os_error());
        Segment { id, ptr: ptr.cast() }
    }

    /// Writes one sample as gpsd does in mode 1: count up, the fields, count up, valid.
    fn write(&mut self, clock_ns: i64, receive_ns: i64) {
        let p = self.ptr;
        // SAFETY: `p` is a live mapping of a whole ShmTime; volatile because strata reads it.
        unsafe {
            let count = std::ptr::read_volatile(std::ptr::addr_of!((*p).count));
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).valid), 0);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).count), count.wrapping_add(1));
            std::sync::atomic::fence(Ordering::SeqCst);
            let t = ShmTime {
                mode: 1,
                count: count.wrapping_add(1),
                clock_sec: clock_ns.div_euclid(1_000_000_000),
                clock_usec: (clock_ns.rem_euclid(1_000_000_000) / 1000) as i32,
                clock_nsec: clock_ns.rem_euclid(1_000_000_000) as u32,
                receive_sec: receive_ns.div_euclid(1_000_000_000),
                receive_usec: (receive_ns.rem_euclid(1_000_000_000) / 1000) as i32,
                receive_nsec: receive_ns.rem_euclid(1_000_000_000) as u32,
                leap: 0,
                precision: -20,
                nsamples: 3,
                valid: 0,
                dummy: [0; 8],
            };
            std::ptr::write_volatile(p, t);
            std::sync::atomic::fence(Ordering::SeqCst);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).count), count.wrapping_add(2));
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).valid), 1);
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: detach our mapping once and mark the segment for removal (it goes when the
        // last process detaches).
        unsafe {
            libc::shmdt(self.ptr.cast());
            libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// A writer thread: one sample a second (the reference = the system clock + `offset_ns`) until
/// `stop` is set.
fn writer(mut deliver: impl FnMut(i64) + Send + 'static, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        // At most ten minutes, whatever happens to the test.
        let end = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            deliver(realtime_ns());
            std::thread::sleep(Duration::from_millis(1000));
        }
    })
}

fn unit_of_this_test(base: u32) -> u8 {
    (base + std::process::id() % 100) as u8
}

fn ntpdig_stratum_1(cli: &Netns, addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = cli.exec("ntpdig", &["-j", "-t", "1", addr]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout.trim()) {
            if v["stratum"].as_u64() == Some(1) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ntpdig saw no stratum 1 from {addr}: {stdout}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Stratum and refid bytes of a raw client query from `ns`, e.g. "1 GPS".
fn stratum_refid(ns: &Netns, addr: &str) -> String {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n\
         s.sendto(b'\\x23'+bytes(47),('{addr}',123))\nd=s.recv(512)\n\
         print(d[1],d[12:16].rstrip(b'\\x00').decode())\n"
    );
    let out = ns.exec("python3", &["-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn the_source<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no source {name} in {status}"))
}

/// strata in a server namespace with `refclock`, a client namespace beside it; runs `check`
/// once strata serves stratum 1 from `pseudo` (the refclock's 127.127.T.U).
fn serves_stratum_1(refclock: &str, pseudo: &str, stop_writer: impl FnOnce()) {
    let srv = Netns::new("rcs");
    let cli = Netns::new("rcc");
    srv.veth("srv0", "198.18.0.5/30", &cli, "cli0", "198.18.0.6/30");
    let control = control_path("refclock");
    let _remove = RemoveOnDrop(control.clone());
    let server = Server::start(
        Some(&srv.name),
        &[
            "--listen",
            "0.0.0.0:123",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            control.to_str().unwrap(),
            "--log-level",
            "info",
            "--minsources",
            "1",
            "--refclock",
            refclock,
        ],
        None,
    );
    wait_log(&server, &format!("synchronized to {pseudo} stratum 1"), 60);
    let answer = ntpdig_stratum_1(&cli, "198.18.0.5");
    let offset = answer["offset"].as_f64().unwrap();
    assert!(offset.abs() < 0.01, "offset {offset}: {answer}");
    if available("python3 (for a raw query)", have_command("python3")) {
        assert_eq!(stratum_refid(&cli, "198.18.0.5"), "1 GPS");
    }
    let name = format!("{pseudo} (GPS)");
    let status = status_json(&control);
    let source = the_source(&status, &name);
    assert_eq!(source["state"], "selected", "{status}");
    assert_eq!(source["stratum"], 0, "{status}");
    assert_eq!(source["mode"], "refclock", "{status}");
    let text = Command::new(strata_bin())
        .args(["status", "--control"])
        .arg(&control)
        .output()
        .expect("run strata status");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains(&format!("\n#* {name} ")),
        "marked as chrony marks refclocks: {text}"
    );
    println!("{refclock}: stratum 1 refid GPS; ntpdig: {answer}");

    // The reference stops: eight polls (poll 1: 2 s each) later it is unreachable.
    stop_writer();
    wait_log(&server, &format!("source {pseudo}:0 is unreachable"), 60);
    // The status board is refreshed once a second: give it a few.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = status_json(&control);
        let source = the_source(&status, &name);
        if source["reach"] == 0 {
            assert_ne!(source["state"], "selected", "{status}");
            assert_eq!(source["reason"], "unreachable", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "reach never 0: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (exit, log) = server.stop();
    assert!(exit.success(), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces and ntpdig (make test runs it)"]
fn stratum_1_from_an_shm_writer_of_the_documented_layout() {
    if !Netns::available() || !available("ntpdig (ntpsec-ntpdig)", have_command("ntpdig")) {
        return;
    }
    let unit = unit_of_this_test(100);
    let mut segment = Segment::create(unit);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = writer(
        move |now| {
            // A receiver 200 µs behind its own reading: the offset strata must measure.
            segment.write(now + 200_000, now);
        },
        stop.clone(),
    );
    serves_stratum_1(
        &format!("shm:{unit} refid GPS poll 1 filter 4"),
        &format!("127.127.28.{unit}"),
        || {
            stop.store(true, Ordering::Relaxed);
        },
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
#[ignore = "needs root, network namespaces and ntpdig (make test runs it)"]
fn stratum_1_from_a_sock_writer_of_chronys_format() {
    if !Netns::available() || !available("ntpdig (ntpsec-ntpdig)", have_command("ntpdig")) {
        return;
    }
    let path = temp_path("refclock-sock", "sock");
    let _remove = RemoveOnDrop(path.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let to = path.clone();
    let socket = UnixDatagram::unbound().unwrap();
    let thread = writer(
        move |now| {
            // struct sock_sample: timeval, offset (reference minus system), pulse, leap, pad,
            // magic, in the host's byte order.
            let mut b = Vec::with_capacity(40);
            b.extend_from_slice(&now.div_euclid(1_000_000_000).to_ne_bytes());
            b.extend_from_slice(&(now.rem_euclid(1_000_000_000) / 1000).to_ne_bytes());
            b.extend_from_slice(&0.000_2f64.to_ne_bytes());
            for v in [0i32, 0, 0, 0x534f_434b] {
                b.extend_from_slice(&v.to_ne_bytes());
            }
            // Until strata has bound the socket, the sends fail: samples are lost, as with gpsd.
            let _ = socket.send_to(&b, &to);
        },
        stop.clone(),
    );
    serves_stratum_1(
        &format!("sock:{} refid GPS poll 1 filter 4", path.display()),
        "127.127.46.0",
        || {
            stop.store(true, Ordering::Relaxed);
        },
    );
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}
