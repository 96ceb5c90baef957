//! hookd's integration tests: the real binary, real sockets, real processes.

mod admin;
mod builds;
mod limits;
mod support;
