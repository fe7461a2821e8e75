//! The chat.db-shaped world: schema, scenarios, reads and writes. (being written)
