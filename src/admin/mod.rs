//! The operator's side: the protocol shared by the admin socket server (in the
//! daemon) and the `hookd admin` client, plus text rendering for the client.

pub mod backup;
pub mod client;
pub mod commands;
pub mod proto;
pub mod reads;
pub mod render;
pub mod server;
