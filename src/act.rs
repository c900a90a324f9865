//! act: carry out a plan (engine, pidfd, sock_diag destroy) and say what happened to each step.
