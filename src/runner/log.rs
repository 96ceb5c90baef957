//! TEMP
use std::path::{Path, PathBuf};
pub struct LogWriter(pub PathBuf);
impl LogWriter {
    pub async fn open(p: &Path, _cap: u64) -> std::io::Result<Self> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        Ok(Self(p.to_owned()))
    }
}
pub async fn read_chunk(path: &Path, offset: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let b = std::fs::read(path).unwrap_or_default();
    let s = (offset as usize).min(b.len());
    let e = (s + max).min(b.len());
    Ok((b[s..e].to_vec(), e as u64))
}
