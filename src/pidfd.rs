//! pidfd: end a connection without stopping the process (pidfd_getfd + shutdown).
