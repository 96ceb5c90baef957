//! hookd's integration tests: the real binary, real sockets, real processes.

mod admin;
mod architecture;
mod browser;
mod builds;
mod cli;
mod collisions;
mod config;
mod data_dir;
mod declared;
mod intake;
mod isolation;
mod limits;
mod live;
mod multiref;
mod ops;
mod outbound;
mod packaging;
mod proxy;
mod readme;
mod register;
mod rotation;
mod source;
mod store;
mod support;
mod tags;
mod web;
