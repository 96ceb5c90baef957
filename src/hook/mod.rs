//! TEMP
use crate::secret::Secret;
use http::HeaderMap;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Generic,
}
impl Provider {
    pub fn as_str(&self) -> &'static str {
        "generic"
    }
}
pub struct PushEvent {
    pub git_ref: Option<String>,
    pub commit: Option<String>,
}
pub enum Delivery {
    Push(PushEvent),
    Other,
}
impl Delivery {
    pub fn provider(&self) -> Provider {
        Provider::Generic
    }
    pub fn event(&self) -> &str {
        "generic"
    }
    pub fn delivery_id(&self) -> Option<&str> {
        None
    }
}
pub enum Decision {
    Build {
        git_ref: String,
        branch: String,
        commit: Option<String>,
    },
    Pong,
    Ignore(String),
}
pub struct WatchRules<'a> {
    pub patterns: &'a [String],
}
pub fn detect(_h: &HeaderMap, _b: &[u8]) -> Provider {
    Provider::Generic
}
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct E;
pub fn verify(_p: Provider, _h: &HeaderMap, _b: &[u8], _s: &Secret, _a: bool) -> Result<(), E> {
    Ok(())
}
pub fn parse(_h: &HeaderMap, q: Option<&str>, _b: &[u8]) -> Result<Delivery, E> {
    let b = q.and_then(|q| q.strip_prefix("branch=")).unwrap_or("main");
    Ok(Delivery::Push(PushEvent {
        git_ref: Some(format!("refs/heads/{b}")),
        commit: None,
    }))
}
pub fn decide(d: &Delivery, _r: &WatchRules) -> Decision {
    match d {
        Delivery::Push(p) => {
            let r = p.git_ref.clone().unwrap();
            Decision::Build {
                branch: r.trim_start_matches("refs/heads/").into(),
                git_ref: r,
                commit: None,
            }
        }
        Delivery::Other => Decision::Pong,
    }
}
