//! (outbound: being written)
