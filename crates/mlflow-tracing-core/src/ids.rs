//! Trace and span identifiers.
//!
//! MLflow writes the same 16-byte OpenTelemetry trace id in four spellings: `tr-<32 hex>` (the v3 trace id),
//! bare 32 hex (v2 request ids and OTLP/JSON), `0x<hex>` (v2 `traces.json`) and base64 of the raw bytes (v3
//! `traces.json`, REST v3 spans). Readers accept all of them; writers use the one each schema prescribes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Why an id could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {value:?}: expected {len} bytes as hex, 0x-hex, tr-hex or base64")]
pub struct IdError {
    kind: &'static str,
    len: usize,
    value: String,
}

macro_rules! define_id {
    ($name:ident, $len:literal, $kind:literal) => {
        #[doc = concat!("A ", $kind, " id: ", stringify!($len), " raw bytes, as in OpenTelemetry.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The all-zero id, which OpenTelemetry treats as invalid.
            pub const INVALID: Self = Self([0; $len]);

            /// Lowercase hex, no prefix.
            pub fn to_hex(&self) -> String {
                hex_encode(&self.0)
            }

            /// Base64 (standard alphabet, padded) of the raw bytes, as v3 `traces.json` writes it.
            pub fn to_base64(&self) -> String {
                BASE64.encode(self.0)
            }

            /// `0x` followed by lowercase hex, as v2 `traces.json` writes it.
            pub fn to_0x_hex(&self) -> String {
                format!("0x{}", self.to_hex())
            }

            /// Reads the raw bytes; `None` unless there are exactly as many as the id has.
            pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }

            /// Reads any spelling MLflow uses: hex, `0x`-hex, `tr-`-hex or base64.
            pub fn parse_any(text: &str) -> Result<Self, IdError> {
                let error = || IdError {
                    kind: $kind,
                    len: $len,
                    value: text.to_owned(),
                };
                let trimmed = text.trim();
                let unprefixed = trimmed
                    .strip_prefix("tr-")
                    .or_else(|| trimmed.strip_prefix("0x"))
                    .or_else(|| trimmed.strip_prefix("0X"))
                    .unwrap_or(trimmed);
                if unprefixed.len() == 2 * $len {
                    if let Some(bytes) = hex_decode(unprefixed) {
                        return Self::from_bytes(&bytes).ok_or_else(error);
                    }
                }
                let bytes = BASE64.decode(trimmed).map_err(|_| error())?;
                Self::from_bytes(&bytes).ok_or_else(error)
            }

            /// Whether any byte is non-zero.
            pub fn is_valid(&self) -> bool {
                *self != Self::INVALID
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

define_id!(TraceId, 16, "trace");
define_id!(SpanId, 8, "span");

impl TraceId {
    /// The MLflow v3 trace id: `tr-` followed by the hex of the OpenTelemetry trace id.
    pub fn to_mlflow(&self) -> String {
        format!("tr-{}", self.to_hex())
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    text
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_fixture_trace_id_reads_the_same_bytes() {
        let from_base64 = TraceId::parse_any("bU3DeighcgBOIcf6oB7hig==").unwrap();
        assert_eq!(
            from_base64.to_mlflow(),
            "tr-6d4dc37a282172004e21c7faa01ee18a"
        );
        for spelling in [
            "tr-6d4dc37a282172004e21c7faa01ee18a",
            "6d4dc37a282172004e21c7faa01ee18a",
            "0x6d4dc37a282172004e21c7faa01ee18a",
            "6D4DC37A282172004E21C7FAA01EE18A",
        ] {
            assert_eq!(
                TraceId::parse_any(spelling).unwrap(),
                from_base64,
                "{spelling}"
            );
        }
        assert_eq!(from_base64.to_base64(), "bU3DeighcgBOIcf6oB7hig==");
    }

    #[test]
    fn span_ids_read_from_base64_and_0x_hex() {
        let span_id = SpanId::parse_any("bvjA2KQNtNo=").unwrap();
        assert_eq!(SpanId::parse_any(&span_id.to_0x_hex()).unwrap(), span_id);
        assert_eq!(span_id.to_base64(), "bvjA2KQNtNo=");
    }

    #[test]
    fn wrong_lengths_and_garbage_are_errors_naming_the_value() {
        let error = TraceId::parse_any("abc").unwrap_err();
        assert!(error.to_string().contains("\"abc\""), "{error}");
        assert!(SpanId::parse_any("6d4dc37a282172004e21c7faa01ee18a").is_err());
        assert!(TraceId::parse_any("tr-zz4dc37a282172004e21c7faa01ee18a").is_err());
    }
}
