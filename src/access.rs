//! (access: being written)
