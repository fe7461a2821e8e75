//! imsg-gateway: an iMessage gateway for an AI assistant.
