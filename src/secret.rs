//! TEMP
#[derive(Clone)]
pub struct Secret(String);
#[derive(Debug)]
pub struct EmptySecret;
impl Secret {
    pub fn new(s: String) -> Result<Self, EmptySecret> {
        if s.trim().is_empty() {
            Err(EmptySecret)
        } else {
            Ok(Self(s))
        }
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
