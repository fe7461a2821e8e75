//! (routing: being written)
