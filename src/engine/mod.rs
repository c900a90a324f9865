//! engine: ptrace injection of close/shutdown/dup3 into a live process, restored exactly.
