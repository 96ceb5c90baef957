//! TEMP
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
#[derive(Default)]
pub struct Credentials {
    pub ssh_key: Option<PathBuf>,
    pub https_token: Option<String>,
    pub https_user: Option<String>,
}
pub struct Remote<'a> {
    pub url: &'a str,
    pub credentials: &'a Credentials,
}
pub struct ResolvedCommit {
    pub id: String,
    pub subject: String,
}
pub fn fetch(
    _r: &Remote,
    _m: &Path,
    _g: &str,
    e: Option<&str>,
    _p: &mut dyn std::io::Write,
    _c: &AtomicBool,
) -> Result<ResolvedCommit, std::io::Error> {
    Ok(ResolvedCommit {
        id: e.unwrap_or("").into(),
        subject: String::new(),
    })
}
pub fn checkout(
    _m: &Path,
    _w: &Path,
    _c: &str,
    _p: &mut dyn std::io::Write,
    _x: &AtomicBool,
) -> Result<(), std::io::Error> {
    Ok(())
}
