//! (inbound: being written)
