//! select: turn the operator's selectors into a filter over matches (pure).
