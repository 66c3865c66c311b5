//! attesta-attester.
