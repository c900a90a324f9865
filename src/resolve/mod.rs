//! resolve: sockets → inodes → fds of the target processes, in their own network namespaces.
