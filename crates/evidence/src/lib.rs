//! attesta-evidence.
