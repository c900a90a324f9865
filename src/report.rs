//! report: table, summary and JSON Lines for plans and results.
