//! Stored values: bincode behind a one-byte format version, so a later hookd can
//! tell an old record from garbage and migrate it instead of misreading it.

use serde::{de::DeserializeOwned, Serialize};

use super::StoreError;

/// Format of every value written by this version of hookd.
const VALUE_VERSION: u8 = 1;

/// Encodes a value as `[version] ++ bincode(value)`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    encode_as(VALUE_VERSION, value)
}

/// Encodes a record whose own format moved past [`VALUE_VERSION`] (fields added).
pub(crate) fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![version];
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a value written by [`encode`]; a wrong version or trailing bytes are corruption.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_as(VALUE_VERSION, bytes)
}

/// Decodes a value written by [`encode_as`] with `version`.
pub(crate) fn decode_as<T: DeserializeOwned>(version: u8, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&v, body)) if v == version => {
            let (value, used) =
                bincode::serde::decode_from_slice(body, bincode::config::standard())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if used != body.len() {
                return Err(StoreError::Corrupt("trailing bytes after value".into()));
            }
            Ok(value)
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!("unknown value version {v}"))),
        None => Err(StoreError::Corrupt("empty value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Option<Vec<u8>>,
    }

    #[test]
    fn round_trips_and_refuses_foreign_bytes() {
        let s = Sample {
            a: 7,
            b: "x".into(),
            c: Some(vec![1, 2]),
        };
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes[0], VALUE_VERSION);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode::<Sample>(&other).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(decode::<Sample>(&longer).is_err());
        assert!(decode::<Sample>(&[]).is_err());
    }
}
