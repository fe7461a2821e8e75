//! (imsg client: being written)
