//! Work in progress: see the issue tracker.
#![warn(missing_docs)]
