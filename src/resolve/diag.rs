//! Netlink sock_diag: requests, replies, and the socket that carries them.
