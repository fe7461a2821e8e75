//! imsg-gateway: an iMessage gateway for an AI assistant.
//!
//! Inbound messages arrive from `imsg rpc` (`imsg`), are normalised and filtered (`inbound`),
//! admitted or refused (`access`), routed to a session (`routing`), answered by an agent
//! (`agent`) and sent back chunked (`outbound`). `state` is the durable store, `gateway` wires
//! it all together at run time, `clock` is its wall clock (a dependency, set in tests),
//! `config` reads the JSON5 file and `cli` is the command line.

pub mod access;
pub mod agent;
pub mod attachments;
pub mod cli;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod imsg;
pub mod inbound;
pub mod outbound;
pub mod routing;
pub mod simulate;
pub mod state;
