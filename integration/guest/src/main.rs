//! VM-test fixture (runs inside the aarch64/riscv64 guests): leak one CLOSE_WAIT socket on
//! loopback, say so, block in one system call, then report how that call ended.
//!
//! usage: guest-fixture nanosleep|futex|read|busy MILLIS [FIFO]
//! prints `READY <pid> <fd>` before blocking, then `RESULT <mode> ret=<r> errno=<e> elapsed_ms=<n>`
//! and `FD <fd> open|gone`.

use std::ffi::CString;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::IntoRawFd;
use std::time::Instant;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("nanosleep");
    let millis: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);

    // The leak: our end of a connection whose peer has closed sits in CLOSE_WAIT.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server_side, _) = listener.accept().expect("accept");
    drop(server_side);
    let leaked = client.into_raw_fd();

    // Open the fifo before saying READY so the writer never races our open.
    let fifo_fd = if mode == "read" {
        let path = CString::new(args.get(3).expect("read needs a FIFO path").as_str()).unwrap();
        // SAFETY: path is a valid NUL-terminated string.
        unsafe { libc::open(path.as_ptr(), libc::O_RDWR) }
    } else {
        -1
    };

    println!("READY {} {}", std::process::id(), leaked);
    std::io::stdout().flush().unwrap();

    let start = Instant::now();
    let (ret, err) = match mode {
        "nanosleep" => {
            let ts = libc::timespec {
                tv_sec: (millis / 1000) as _,
                tv_nsec: ((millis % 1000) * 1_000_000) as _,
            };
            // SAFETY: ts is a valid timespec; no remainder wanted.
            let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            (r as i64, if r < 0 { errno() } else { 0 })
        }
        "futex" => {
            let word: u32 = 0;
            let ts = libc::timespec {
                tv_sec: (millis / 1000) as _,
                tv_nsec: ((millis % 1000) * 1_000_000) as _,
            };
            // SAFETY: FUTEX_WAIT on a live u32 with a relative timeout; nobody wakes it.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    &word as *const u32,
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    0u32,
                    &ts as *const libc::timespec,
                )
            };
            (r as i64, if r < 0 { errno() } else { 0 })
        }
        "read" => {
            let mut buf = [0u8; 64];
            // SAFETY: buf is writable for its length; fifo_fd is ours.
            let r = unsafe { libc::read(fifo_fd, buf.as_mut_ptr().cast(), buf.len()) };
            (r as i64, if r < 0 { errno() } else { 0 })
        }
        "busy" => {
            let mut spins = 0u64;
            while start.elapsed().as_millis() < millis as u128 {
                spins = spins.wrapping_add(1);
                std::hint::black_box(spins);
            }
            (0, 0)
        }
        other => {
            eprintln!("guest-fixture: unknown mode {other}");
            std::process::exit(2);
        }
    };
    let elapsed = start.elapsed().as_millis();
    println!("RESULT {mode} ret={ret} errno={err} elapsed_ms={elapsed}");
    let open = std::path::Path::new(&format!("/proc/self/fd/{leaked}")).exists();
    println!("FD {leaked} {}", if open { "open" } else { "gone" });
}
