//! attesta-content.
