//! attesta-node.
