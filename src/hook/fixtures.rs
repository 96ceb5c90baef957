//! Test-only access to the recorded webhook deliveries (`tests/fixtures/webhooks`, a
//! copy of the team's shared fixtures) and their manifest.

use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

/// One recorded delivery: its manifest entry, headers and body bytes.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) provider: String,
    pub(crate) manifest: Value,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Case {
    /// A manifest string field, `None` when absent or null.
    pub(crate) fn field(&self, key: &str) -> Option<&str> {
        self.manifest.get(key).and_then(Value::as_str)
    }

    /// "provider/case", for assertion messages.
    pub(crate) fn id(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }
}

/// The fixture directory, inside the repository so the tests run anywhere.
pub(crate) fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks")
}

pub(crate) fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every case in the manifest, loaded.
pub(crate) fn cases() -> Vec<Case> {
    let manifest = manifest();
    let cases = manifest["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 19, "manifest lost cases");
    cases.into_iter().map(load).collect()
}

/// The case `provider/name`, its JSON body changed by `edit` (to name other ids).
pub(crate) fn edited(provider: &str, name: &str, edit: impl FnOnce(&mut Value)) -> Case {
    let mut case = cases()
        .into_iter()
        .find(|c| c.provider == provider && c.name == name)
        .unwrap_or_else(|| panic!("no fixture {provider}/{name}"));
    let mut body: Value = serde_json::from_slice(&case.body).unwrap();
    edit(&mut body);
    case.body = serde_json::to_vec(&body).unwrap();
    case
}

fn load(entry: Value) -> Case {
    let body_file = entry["body_file"].as_str().unwrap();
    let headers_file = entry["headers_file"].as_str().unwrap();
    let body = std::fs::read(dir().join(body_file)).unwrap();
    let headers = std::fs::read_to_string(dir().join(headers_file)).unwrap();
    Case {
        name: entry["case"].as_str().unwrap().to_owned(),
        provider: entry["provider"].as_str().unwrap().to_owned(),
        headers: parse_headers(&headers),
        body,
        manifest: entry,
    }
}

fn parse_headers(text: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        map.append(
            HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    map
}
