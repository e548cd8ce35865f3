//! Integration and property tests live in `tests/`; this library is empty.
