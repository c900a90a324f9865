//! fdclose: relieve socket and fd leaks in running processes without restarting them.
//!
//! The data flow is the module layout: **select** (which processes, which sockets) → **resolve**
//! (sockets to inodes to fds, in the target's network namespace) → **plan** (a printable value) →
//! **act** (ptrace engine, pidfd, sock_diag) → **report** / **journal**.

pub mod cli;
pub mod model;
pub mod plan;
