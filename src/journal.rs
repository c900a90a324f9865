//! journal: JSON Lines rollback log, fsynced before and after every mutation.
