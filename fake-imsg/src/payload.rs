//! Wire JSON for chats, messages and attachments. (being written)
