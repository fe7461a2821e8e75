//! (state: being written)
