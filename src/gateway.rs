//! (gateway: being written)
