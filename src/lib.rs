//! fdclose: relieve socket and fd leaks in running processes without restarting them.
//!
//! The data flow is the module layout: **select** (which processes, which sockets) → **resolve**
//! (sockets to inodes to fds, in the target's network namespace) → **plan** (a printable value) →
//! **act** (ptrace engine, pidfd, sock_diag destroy) → **report** / **journal**.
//!
//! `unsafe` is denied here and allowed only in the modules that talk to the kernel directly.
#![deny(unsafe_code)]

pub mod cli;
pub mod config;
pub mod model;
pub mod plan;
pub mod select;

#[allow(unsafe_code)]
pub mod resolve;

pub mod act;
#[allow(unsafe_code)]
pub mod destroy;
#[allow(unsafe_code)]
pub mod engine;
pub mod journal;
#[allow(unsafe_code)]
pub mod pidfd;

pub mod report;
