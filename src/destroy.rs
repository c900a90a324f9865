//! destroy: SOCK_DESTROY through sock_diag, for orphans and owned sockets.
