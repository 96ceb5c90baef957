//! The operator's side: the protocol shared by the admin socket server (in the
//! daemon) and the `hookd admin` client, plus text rendering for the client.

pub(crate) mod backup;
pub mod client;
pub(crate) mod commands;
pub(crate) mod declared;
pub(crate) mod proto;
pub(crate) mod reads;
pub(crate) mod render;
pub(crate) mod rotation;
pub(crate) mod server;
pub(crate) mod webhook;
