//! Time the parts of a resolve (fd table read, sock_diag dumps) for one pid: `resolve_parts PID`.
use fdclose::resolve::{diag, fds};
use std::time::Instant;

fn main() {
    let pid: i32 = std::env::args().nth(1).unwrap().parse().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let tb = fds::read_fd_table(pid).unwrap();
        let t1 = t.elapsed();
        let mut s = diag::DiagSocket::open().unwrap();
        let t = Instant::now();
        let mut n = 0;
        s.inet_sockets(diag::IPPROTO_TCP, 1 << 8, |_| n += 1)
            .unwrap();
        let t2 = t.elapsed();
        let t = Instant::now();
        let mut m = 0;
        for fam in [2u8, 10] {
            let req = diag::inet_dump_request(fam, diag::IPPROTO_TCP, 1 << 8, 0).encode();
            s.dump(&req, |_| m += 1).unwrap();
        }
        let t3 = t.elapsed();
        println!(
            "fds {} in {:?}; dump+ext {} in {:?}; dump bare {} in {:?}",
            tb.sockets.len(),
            t1,
            n,
            t2,
            m,
            t3
        );
    }
}
