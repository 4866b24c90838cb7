//! The JSON text of a `Serialize` value, appended to a byte buffer.
//!
//! The output is byte for byte serde_json's compact form (the tests compare the two over every kind of
//! value), so a payload reads the same whichever way it was written. It is written here because payloads
//! are encoded on the traced thread, and the long strings of an LLM call are most of them: serde_json scans
//! a string one byte at a time, this writer sixteen bytes at a time (a 1 KB prompt takes a fifth of the
//! time), and it writes brackets and commas as single pushes. Keys, short strings and numbers, the bulk of
//! small payloads, are written in place into room appended with stores of a fixed size, never with a call
//! to `memcpy` and never through a stack block read back at once (see [`append_room`]).

use std::fmt::{self, Display};

use serde::ser::{self, Impossible, Serialize};

/// Why a value has no JSON text: its `Serialize` refused, or a map key is not a string, number or bool.
#[derive(Debug)]
pub(crate) struct JsonError(String);

impl Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

impl ser::Error for JsonError {
    fn custom<T: Display>(message: T) -> Self {
        JsonError(message.to_string())
    }
}

fn key_must_be_a_string() -> JsonError {
    JsonError("key must be a string".to_owned())
}

/// Appends the value's JSON to `out`. On error `out` may hold part of it; the caller cuts it off.
#[inline]
pub(crate) fn write_value<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), JsonError> {
    value.serialize(&mut JsonWriter { out })
}

/// Appends `text` as a JSON string.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    if !write_short_str(out, text.as_bytes(), false) {
        out.push(b'"');
        write_escaped(out, text);
        out.push(b'"');
    }
}

/// Appends `"key":`.
#[inline]
fn write_key(out: &mut Vec<u8>, key: &str) {
    if !write_short_str(out, key.as_bytes(), true) {
        write_str(out, key);
        out.push(b':');
    }
}

/// Appends a text of at most [`SHORT`] bytes with nothing to escape, quoted, and a colon after it with
/// `colon`; false, writing nothing, for any other text. Most keys and many values are such texts, and
/// here they cost a few word operations and stores of a fixed size instead of a scan and a `memcpy` call.
/// Always inlined: it runs for every key, and as a call, saving and restoring registers costs about as
/// much as its work.
#[inline(always)]
fn write_short_str(out: &mut Vec<u8>, bytes: &[u8], colon: bool) -> bool {
    let length = bytes.len();
    if length > SHORT {
        return false;
    }
    // The text is read as two words that overlap when it is shorter than two words, and tested in
    // registers; texts shorter than a word are padded with spaces, which need no escape.
    let (head, tail) = if length >= 8 {
        (word(&bytes[..8]), word(&bytes[length - 8..]))
    } else {
        let text_bytes = (1_u64 << (8 * length)) - 1;
        let padded = short_word(bytes) | ((ONES * u64::from(b' ')) & !text_bytes);
        (padded, padded)
    };
    if escape_bits(head) | escape_bits(tail) != 0 {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&[b'"'; SHORT + 8]);
    let block = &mut out[start..][..SHORT + 8];
    block[1..9].copy_from_slice(&head.to_le_bytes());
    if length >= 8 {
        block[length - 7..][..8].copy_from_slice(&tail.to_le_bytes());
    }
    block[length + 1] = b'"';
    block[length + 2] = b':';
    out.truncate(start + length + 2 + usize::from(colon));
    true
}

/// The longest text [`write_short_str`] takes.
const SHORT: usize = 16;

/// A text shorter than a word as the low bytes of a little-endian word, the others zero: two loads of
/// at most four bytes that overlap, never a byte-by-byte copy.
#[inline]
fn short_word(bytes: &[u8]) -> u64 {
    let length = bytes.len();
    if length >= 4 {
        let low = u32::from_le_bytes(bytes[..4].try_into().unwrap_or([0; 4]));
        let high = u32::from_le_bytes(bytes[length - 4..].try_into().unwrap_or([0; 4]));
        u64::from(low) | u64::from(high) << (8 * (length - 4))
    } else if length >= 2 {
        let low = u16::from_le_bytes(bytes[..2].try_into().unwrap_or([0; 2]));
        let high = u16::from_le_bytes(bytes[length - 2..].try_into().unwrap_or([0; 2]));
        u64::from(low) | u64::from(high) << (8 * (length - 2))
    } else {
        bytes.first().map_or(0, |&byte| u64::from(byte))
    }
}

/// Eight bytes as a little-endian word.
#[inline]
fn word(eight: &[u8]) -> u64 {
    u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]))
}

/// What a byte becomes inside a JSON string: 0 for itself, else the letter of its short escape (`\n`), or
/// `u` for `\u00XX`.
static ESCAPE: [u8; 256] = {
    let mut table = [0_u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Nonzero when any of the eight bytes is a quote, a backslash or a control character. Each test sets a
/// byte's high bit when the byte is below its bound (a quote or backslash is zero after its XOR); bytes with
/// their own high bit set (UTF-8) are masked out once for all three, since the XORs keep high bits.
#[inline]
fn escape_bits(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20);
    let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    (below_space | quote | backslash) & !word & HIGHS
}

/// Appends the escaped text without quotes.
fn write_escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let mut clean_from = 0;
    let mut at = 0;
    // Sixteen bytes at a time. A test's lowest set bit is in the first byte to escape: a borrow only runs
    // upwards from a byte that matched, so with little-endian words the trailing zeros count the bytes
    // before it. The bytes before it are copied as the whole block and cut back: a copy of a known size is
    // two stores, one of a varying size is a call.
    while let Some(block) = bytes.get(at..at + 16) {
        let (low, high) = (
            escape_bits(word(&block[..8])),
            escape_bits(word(&block[8..])),
        );
        if low | high == 0 {
            at += 16;
            continue;
        }
        let offset = if low != 0 {
            low.trailing_zeros() / 8
        } else {
            8 + high.trailing_zeros() / 8
        } as usize;
        if clean_from < at {
            out.extend_from_slice(&bytes[clean_from..at]);
        }
        let kept = out.len() + offset;
        let block: &[u8; 16] = block.try_into().unwrap_or(&[0; 16]);
        out.extend_from_slice(block);
        out.truncate(kept);
        write_escape(out, block[offset]);
        at += offset + 1;
        clean_from = at;
    }
    let tail = &bytes[at..];
    // The tail, shorter than a block, is tested with words too, ending at the text's end (they may reach
    // back before the tail: a byte there that was escaped only sends the tail the slow way).
    let tail_is_clean = tail.is_empty()
        || if bytes.len() >= 8 {
            let last = escape_bits(word(&bytes[bytes.len() - 8..]));
            let first = tail.get(..8).map_or(0, |first| escape_bits(word(first)));
            last | first == 0
        } else {
            tail.iter().all(|&byte| ESCAPE[usize::from(byte)] == 0)
        };
    if !tail_is_clean {
        for (offset, &byte) in tail.iter().enumerate() {
            if ESCAPE[usize::from(byte)] != 0 {
                let hit = at + offset;
                out.extend_from_slice(&bytes[clean_from..hit]);
                write_escape(out, byte);
                clean_from = hit + 1;
            }
        }
    }
    out.extend_from_slice(&bytes[clean_from..]);
}

#[inline]
fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match ESCAPE[usize::from(byte)] {
        b'u' => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]),
        escape => out.extend_from_slice(&[b'\\', escape]),
    }
}

/// Escapes `Display` output straight into the buffer (`collect_str`).
struct EscapingWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for EscapingWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_escaped(self.0, text);
        Ok(())
    }
}

fn write_display<T: Display + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), JsonError> {
    use fmt::Write as _;
    out.push(b'"');
    write!(EscapingWriter(out), "{value}")
        .map_err(|_| JsonError("a Display implementation failed".to_owned()))?;
    out.push(b'"');
    Ok(())
}

#[inline]
fn write_f64(out: &mut Vec<u8>, value: f64) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if !write_short_decimal(out, value) {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    }
}

/// Writes a float that is a decimal with at most four digits after the point (0.1, 0.75, 1024.0), between
/// 0.001 and 10^15, the way the shortest round-trip formatting writes it; false, writing nothing, for any
/// other. Such floats (temperatures, probabilities, scores) are most of the floats in payloads, and this
/// takes a few multiplications instead of the general algorithm.
///
/// A decimal with `k` digits after the point round-trips when dividing its digits by 10^k gives the float
/// back (both exact, so the division rounds as parsing the decimal would); the nearest such decimal is the
/// only candidate, and the smallest such `k` gives the shortest form. In this range the shortest form is
/// written without an exponent.
fn write_short_decimal(out: &mut Vec<u8>, value: f64) -> bool {
    const SCALES: [f64; 5] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0];
    // Below 2^52 adding a half to the scaled value rounds it at most one off the nearest integer (only where
    // the sum crosses a power of two); the check below then refuses the candidate, so no rounding function
    // is needed.
    const HALF_IS_EXACT: f64 = 4_503_599_627_370_496.0; // 2^52
    let magnitude = value.abs();
    if !(1e-3..1e15).contains(&magnitude) {
        return false;
    }
    for (places, scale) in SCALES.into_iter().enumerate() {
        let scaled = magnitude * scale;
        if scaled >= HALF_IS_EXACT {
            return false;
        }
        // An integer below 2^52: converting it back loses nothing (as i64, in one instruction).
        let digits = (scaled + 0.5) as i64;
        if digits as f64 / scale != magnitude {
            continue;
        }
        let digits = digits.unsigned_abs();
        // Constant divisors, which compile to multiplications.
        let (whole, mut fraction) = match places {
            0 => (digits, 0),
            1 => (digits / 10, digits % 10),
            2 => (digits / 100, digits % 100),
            3 => (digits / 1_000, digits % 1_000),
            _ => (digits / 10_000, digits % 10_000),
        };
        let sign = usize::from(value < 0.0);
        let whole_digits = digit_count(whole);
        let room = append_room(out, sign + whole_digits + 1 + places.max(1));
        let (integral, decimals) = room.split_at_mut(sign + whole_digits);
        // As in `write_integer`: a positive number's first digit overwrites the sign.
        integral[0] = b'-';
        write_digits(&mut integral[sign..], whole);
        decimals[0] = b'.';
        for digit in decimals[1..].iter_mut().rev() {
            *digit = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        return true;
    }
    false
}

/// Room for the longest number written here: a 20-digit integer, or a 15-digit whole part, a point, four
/// decimals and a sign.
const NUMBER_WIDTH: usize = 24;

/// "00" to "99".
static DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0_u8; 200];
    let mut pair = 0;
    while pair < 100 {
        pairs[2 * pair] = b'0' + (pair / 10) as u8;
        pairs[2 * pair + 1] = b'0' + (pair % 10) as u8;
        pair += 1;
    }
    pairs
};

/// How many decimal digits `value` has.
#[inline]
fn digit_count(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Writes the decimal digits of `value` into `digits`, which is exactly as long as they are.
#[inline]
fn write_digits(digits: &mut [u8], value: u64) {
    let (mut end, mut rest) = (digits.len(), value);
    while rest >= 100 {
        let pair = (rest % 100) as usize * 2;
        rest /= 100;
        end -= 2;
        digits[end..end + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = rest as usize * 2;
        digits[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        digits[end - 1] = b'0' + rest as u8;
    }
}

/// Appends `length` (at most [`NUMBER_WIDTH`]) zero bytes and returns them to be written.
///
/// The room is made with stores of a fixed size, and the number is written into it in place. Composing it
/// in a stack block and copying that would read back bytes just stored one or two at a time: the CPU
/// cannot forward several small stores to one wide load, so such a load waits until the stores reach the
/// cache, and that wait grows with everything else the thread has stored.
#[inline]
fn append_room(out: &mut Vec<u8>, length: usize) -> &mut [u8] {
    let start = out.len();
    out.extend_from_slice(&[0; NUMBER_WIDTH]);
    out.truncate(start + length);
    &mut out[start..]
}

/// Appends an integer's decimal digits, after a minus sign when `negative`.
#[inline]
fn write_integer(out: &mut Vec<u8>, negative: bool, magnitude: u64) {
    if magnitude < 10 && !negative {
        out.push(b'0' + magnitude as u8);
        return;
    }
    let sign = usize::from(negative);
    let room = append_room(out, sign + digit_count(magnitude));
    // The sign's place, or else the first digit's, which the digits then overwrite: no branch.
    room[0] = b'-';
    write_digits(&mut room[sign..], magnitude);
}

#[inline]
fn write_f32(out: &mut Vec<u8>, value: f32) {
    if value.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Struct names serde_json gives its `RawValue` and (with `arbitrary_precision`) its `Number`: their one
/// field is JSON text to copy as it is.
const RAW_TEXT_STRUCTS: [&str; 2] = [
    "$serde_json::private::RawValue",
    "$serde_json::private::Number",
];

struct JsonWriter<'a> {
    out: &'a mut Vec<u8>,
}

/// An array, object or variant being written.
struct Compound<'w, 'a> {
    writer: &'w mut JsonWriter<'a>,
    first: bool,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Object,
    /// `{"variant":[…]}`.
    ArrayVariant,
    /// `{"variant":{…}}`.
    ObjectVariant,
    /// A struct whose field is JSON text (see [`RAW_TEXT_STRUCTS`]).
    RawText,
}

impl<'w, 'a> Compound<'w, 'a> {
    #[inline]
    fn open(writer: &'w mut JsonWriter<'a>, kind: Kind) -> Compound<'w, 'a> {
        match kind {
            Kind::Array | Kind::ArrayVariant => writer.out.push(b'['),
            Kind::Object | Kind::ObjectVariant => writer.out.push(b'{'),
            Kind::RawText => {}
        }
        Compound {
            writer,
            first: true,
            kind,
        }
    }

    /// Opens `{"variant":` and then the array or object.
    fn variant(writer: &'w mut JsonWriter<'a>, variant: &str, kind: Kind) -> Compound<'w, 'a> {
        writer.out.push(b'{');
        write_str(writer.out, variant);
        writer.out.push(b':');
        Compound::open(writer, kind)
    }

    #[inline]
    fn separate(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.writer.out.push(b',');
        }
    }

    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.separate();
        value.serialize(&mut *self.writer)
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), JsonError> {
        if self.kind == Kind::RawText {
            return write_raw_text(self.writer.out, value);
        }
        self.separate();
        write_key(self.writer.out, key);
        value.serialize(&mut *self.writer)
    }

    #[inline]
    fn close(self) -> Result<(), JsonError> {
        let out = &mut *self.writer.out;
        match self.kind {
            Kind::Array => out.push(b']'),
            Kind::Object => out.push(b'}'),
            Kind::ArrayVariant => out.extend_from_slice(b"]}"),
            Kind::ObjectVariant => out.extend_from_slice(b"}}"),
            Kind::RawText => {}
        }
        Ok(())
    }
}

/// Copies the field of a [`RAW_TEXT_STRUCTS`] struct, which holds JSON text.
#[cold]
#[inline(never)]
fn write_raw_text<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), JsonError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => {
            out.extend_from_slice(text.as_bytes());
            Ok(())
        }
        _ => Err(JsonError("raw JSON text must be a string".to_owned())),
    }
}

macro_rules! write_integers {
    ($($method:ident: $integer:ty => $parts:expr),*) => {$(
        #[inline]
        fn $method(self, value: $integer) -> Result<(), JsonError> {
            let (negative, magnitude) = $parts(value);
            write_integer(self.out, negative, magnitude);
            Ok(())
        }
    )*};
}

macro_rules! write_wide_integers {
    ($($method:ident: $integer:ty),*) => {$(
        fn $method(self, value: $integer) -> Result<(), JsonError> {
            self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            Ok(())
        }
    )*};
}

impl<'w, 'a> ser::Serializer for &'w mut JsonWriter<'a> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, value: bool) -> Result<(), JsonError> {
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        Ok(())
    }

    write_integers!(
        serialize_i8: i8 => |value: i8| (value < 0, u64::from(value.unsigned_abs())),
        serialize_i16: i16 => |value: i16| (value < 0, u64::from(value.unsigned_abs())),
        serialize_i32: i32 => |value: i32| (value < 0, u64::from(value.unsigned_abs())),
        serialize_i64: i64 => |value: i64| (value < 0, value.unsigned_abs()),
        serialize_u8: u8 => |value: u8| (false, u64::from(value)),
        serialize_u16: u16 => |value: u16| (false, u64::from(value)),
        serialize_u32: u32 => |value: u32| (false, u64::from(value)),
        serialize_u64: u64 => |value: u64| (false, value)
    );
    write_wide_integers!(serialize_i128: i128, serialize_u128: u128);

    fn serialize_f32(self, value: f32) -> Result<(), JsonError> {
        write_f32(self.out, value);
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result<(), JsonError> {
        write_f64(self.out, value);
        Ok(())
    }

    fn serialize_char(self, value: char) -> Result<(), JsonError> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result<(), JsonError> {
        write_str(self.out, value);
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), JsonError> {
        self.out.push(b'[');
        for (index, byte) in value.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(itoa::Buffer::new().format(*byte).as_bytes());
        }
        self.out.push(b']');
        Ok(())
    }

    fn serialize_none(self) -> Result<(), JsonError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), JsonError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), JsonError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), JsonError> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::open(self, Kind::Array))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::open(self, Kind::Array))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::open(self, Kind::Array))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::variant(self, variant, Kind::ArrayVariant))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::open(self, Kind::Object))
    }

    #[inline]
    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        if RAW_TEXT_STRUCTS.contains(&name) {
            return Ok(Compound::open(self, Kind::RawText));
        }
        Ok(Compound::open(self, Kind::Object))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, JsonError> {
        Ok(Compound::variant(self, variant, Kind::ObjectVariant))
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        write_display(self.out, value)
    }
}

/// Arrays: the element-wise traits differ only in their method's name.
macro_rules! array_impls {
    ($($serialize:ident::$method:ident),*) => {$(
        impl ser::$serialize for Compound<'_, '_> {
            type Ok = ();
            type Error = JsonError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
                self.element(value)
            }

            fn end(self) -> Result<(), JsonError> {
                self.close()
            }
        }
    )*};
}

array_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        self.separate();
        key.serialize(MapKey {
            out: self.writer.out,
        })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.writer.out.push(b':');
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), JsonError> {
        self.close()
    }
}

/// Objects with named fields: a struct and a struct variant.
macro_rules! struct_impls {
    ($($serialize:ident),*) => {$(
        impl ser::$serialize for Compound<'_, '_> {
            type Ok = ();
            type Error = JsonError;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), JsonError> {
                self.field(key, value)
            }

            fn end(self) -> Result<(), JsonError> {
                self.close()
            }
        }
    )*};
}

struct_impls!(SerializeStruct, SerializeStructVariant);

/// A map key: JSON object keys are strings, so numbers and bools are written quoted, as serde_json does,
/// and anything else is an error.
struct MapKey<'a> {
    out: &'a mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(self, text: &str) -> Result<(), JsonError> {
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
        Ok(())
    }
}

macro_rules! quoted_integer_keys {
    ($($method:ident: $integer:ty),*) => {$(
        fn $method(self, value: $integer) -> Result<(), JsonError> {
            self.quoted(itoa::Buffer::new().format(value))
        }
    )*};
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Impossible<(), JsonError>;
    type SerializeTuple = Impossible<(), JsonError>;
    type SerializeTupleStruct = Impossible<(), JsonError>;
    type SerializeTupleVariant = Impossible<(), JsonError>;
    type SerializeMap = Impossible<(), JsonError>;
    type SerializeStruct = Impossible<(), JsonError>;
    type SerializeStructVariant = Impossible<(), JsonError>;

    fn serialize_bool(self, value: bool) -> Result<(), JsonError> {
        self.quoted(if value { "true" } else { "false" })
    }

    quoted_integer_keys!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128
    );

    fn serialize_f32(self, value: f32) -> Result<(), JsonError> {
        if !value.is_finite() {
            return Err(JsonError("float key must be finite".to_owned()));
        }
        self.quoted(zmij::Buffer::new().format_finite(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), JsonError> {
        if !value.is_finite() {
            return Err(JsonError("float key must be finite".to_owned()));
        }
        self.quoted(zmij::Buffer::new().format_finite(value))
    }

    fn serialize_char(self, value: char) -> Result<(), JsonError> {
        write_str(self.out, value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), JsonError> {
        write_str(self.out, value);
        Ok(())
    }

    fn serialize_bytes(self, _value: &[u8]) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_none(self) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), JsonError> {
        write_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, JsonError> {
        Err(key_must_be_a_string())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, JsonError> {
        Err(key_must_be_a_string())
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        write_display(self.out, value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::{Serialize, Serializer};
    use serde_json::{Map, Value, json};

    use super::*;

    /// Our text of `value`, or None where we refuse it.
    fn ours<T: Serialize + ?Sized>(value: &T) -> Option<String> {
        let mut out = b"prefix ".to_vec();
        write_value(&mut out, value).ok()?;
        let text = String::from_utf8(out).expect("always UTF-8");
        Some(text.strip_prefix("prefix ").expect("appended").to_owned())
    }

    fn assert_same<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(ours(value), serde_json::to_string(value).ok());
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(i32);

    #[derive(Serialize)]
    struct Pair(u8, &'static str);

    #[derive(Serialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Line(i32, i32),
        Box { width: u32, label: &'static str },
        NoFields {},
        NoItems(),
    }

    #[derive(Serialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: u128,
        negative: i128,
        float: f32,
        missing: Option<String>,
        present: Option<Vec<u16>>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        nested: BTreeMap<String, Vec<Option<bool>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        letter: char,
    }

    struct Bytes(&'static [u8]);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct Shown(&'static str);

    impl Serialize for Shown {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(&format_args!("<{}>", self.0))
        }
    }

    #[test]
    fn scalars_are_written_as_serde_json_writes_them() {
        for float in [
            0.0,
            -0.0,
            0.1,
            1.5,
            -2.25,
            1e21,
            1e-7,
            123_456_789.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_same(&float);
        }
        for float in [0.1_f32, 3.4e38, 1e-45, f32::NAN] {
            assert_same(&float);
        }
        assert_same(&[i64::MIN, -1, 0, 1, i64::MAX]);
        assert_same(&[u64::MAX]);
        assert_same(&[i128::MIN, i128::MAX]);
        assert_same(&u128::MAX);
        assert_same(&[true, false]);
        assert_same(&['a', '"', '\\', '\n', '\u{1}', 'é', '😀']);
        assert_same(&());
        assert_same(&None::<u8>);
        assert_same(&Bytes(&[0, 7, 255]));
        assert_same(&Bytes(&[]));
        assert_same(&Shown("a \"quoted\"\n display"));
    }

    #[test]
    fn strings_escape_exactly_the_characters_serde_json_escapes() {
        let every_ascii: String = (0_u8..128).map(char::from).collect();
        assert_same(&every_ascii);
        // Escapes at every offset of the eight-byte scan, and text that ends mid-word.
        for offset in 0..20 {
            for special in ["\"", "\\", "\n", "\u{1f}", "\u{7f}", "é", "😀"] {
                let text = format!("{}{special}{}", "x".repeat(offset), "y".repeat(offset % 9));
                assert_same(&text);
            }
        }
        assert_same("");
        assert_same("plain text longer than one word of eight bytes");
    }

    /// A struct whose field names are chosen at run time (serde only needs them `'static`).
    struct Fields(Vec<(&'static str, u8)>);

    impl Serialize for Fields {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut fields = serializer.serialize_struct("Fields", self.0.len())?;
            for (key, value) in &self.0 {
                fields.serialize_field(key, value)?;
            }
            fields.end()
        }
    }

    /// Texts around the short path's limit, clean or with one character to escape at every position, as
    /// values, map keys and struct field names.
    #[test]
    fn short_texts_and_field_names_match_serde_json() {
        for length in 0..=SHORT + 2 {
            let clean = "abcdefghijklmnopqrstu"[..length].to_owned();
            let mut texts = vec![clean.clone()];
            for at in 0..length {
                for special in ["\"", "\\", "\n", "\u{0}", "\u{1f}"] {
                    texts.push(format!("{}{special}{}", &clean[..at], &clean[at + 1..]));
                }
                texts.push(format!("{}é{}", &clean[..at], &clean[at + 1..]));
            }
            for text in texts {
                assert_same(&text);
                assert_same(&BTreeMap::from([(text.clone(), 1)]));
                let key: &'static str = Box::leak(text.into_boxed_str());
                assert_same(&Fields(vec![(key, 1), ("next", 2)]));
            }
        }
    }

    #[test]
    fn integers_of_every_width_match_serde_json() {
        let mut power = 1_u64;
        for _ in 0..20 {
            assert_same(&[power - 1, power, power + 1]);
            if let Ok(signed) = i64::try_from(power) {
                assert_same(&[-signed, 1 - signed, -1 - signed]);
            }
            power = power.saturating_mul(10);
        }
        assert_same(&(i8::MIN..=i8::MAX).collect::<Vec<_>>());
        assert_same(&(u8::MIN..=u8::MAX).collect::<Vec<_>>());
        assert_same(&[i16::MIN, i16::MAX]);
        assert_same(&[u16::MAX]);
        assert_same(&[i32::MIN, i32::MAX]);
        assert_same(&[u32::MAX]);
        assert_same(&[i64::MIN, i64::MAX]);
        assert_same(&[u64::MAX]);
    }

    #[test]
    fn containers_enums_and_structs_match_serde_json() {
        let everything = Everything {
            flag: true,
            small: -8,
            big: u128::MAX,
            negative: i128::MIN,
            float: 2.5,
            missing: None,
            present: Some(vec![1, 2, 3]),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(-7),
            pair: Pair(9, "nine"),
            shapes: vec![
                Shape::Empty,
                Shape::Circle(0.5),
                Shape::Line(1, -1),
                Shape::Box {
                    width: 4,
                    label: "four\twide",
                },
                Shape::NoFields {},
                Shape::NoItems(),
            ],
            nested: BTreeMap::from([
                ("a".to_owned(), vec![Some(true), None]),
                ("".to_owned(), Vec::new()),
            ]),
            skipped: None,
            letter: 'z',
        };
        assert_same(&everything);
        assert_same(&Vec::<u8>::new());
        assert_same(&(1, "two", 3.0));
        assert_same(&HashMap::<String, u8>::new());
    }

    #[test]
    fn map_keys_are_quoted_or_refused_as_serde_json_does() {
        assert_same(&BTreeMap::from([(1_i32, "one"), (-2, "minus two")]));
        assert_same(&BTreeMap::from([(u128::MAX, 1)]));
        assert_same(&BTreeMap::from([(true, 1), (false, 0)]));
        assert_same(&BTreeMap::from([('k', 1)]));
        assert_same(&BTreeMap::from([(Some("some"), 1)]));
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum Key {
            First,
        }
        assert_same(&BTreeMap::from([(Key::First, 1)]));
        let float_keys: Vec<(f64, u8)> = vec![(1.5, 1)];
        struct FloatKeyed(Vec<(f64, u8)>);
        impl Serialize for FloatKeyed {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
            }
        }
        assert_same(&FloatKeyed(float_keys));
        assert_same(&FloatKeyed(vec![(f64::NAN, 1)]));
        // Keys that are not strings, numbers or bools: both refuse.
        assert_eq!(ours(&BTreeMap::from([(vec![1], 1)])), None);
        assert!(serde_json::to_string(&BTreeMap::from([(vec![1], 1)])).is_err());
        assert_eq!(ours(&BTreeMap::from([((), 1)])), None);
        assert_eq!(ours(&BTreeMap::from([(None::<u8>, 1)])), None);
    }

    /// A xorshift generator for the random values below.
    struct Random(u64);

    impl Random {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }

        fn text(&mut self) -> String {
            const PIECES: [&str; 12] = [
                "a",
                "bc",
                " ",
                "\"",
                "\\",
                "\n",
                "\u{0}",
                "\u{1b}",
                "é",
                "€",
                "😀",
                "plain words",
            ];
            (0..self.next(12))
                .map(|_| PIECES[self.next(PIECES.len() as u64) as usize])
                .collect()
        }

        fn value(&mut self, depth: u32) -> Value {
            match self.next(if depth > 3 { 5 } else { 7 }) {
                0 => Value::Null,
                1 => Value::Bool(self.next(2) == 1),
                2 => json!(self.next(u64::MAX) as i64),
                3 => json!(f64::from_bits(self.next(u64::MAX))),
                4 => Value::String(self.text()),
                5 => Value::Array((0..self.next(5)).map(|_| self.value(depth + 1)).collect()),
                _ => Value::Object(
                    (0..self.next(5))
                        .map(|_| (self.text(), self.value(depth + 1)))
                        .collect::<Map<String, Value>>(),
                ),
            }
        }
    }

    #[test]
    fn random_json_values_match_serde_json() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let value = random.value(0);
            assert_same(&value);
        }
    }

    /// The short-decimal path writes what zmij (serde_json's formatter) writes, or leaves the float to it:
    /// decimals of every length around the path's limits, at every magnitude, and random bit patterns.
    #[test]
    fn short_decimals_are_written_as_the_general_formatting_writes_them() {
        let general = |value: f64| zmij::Buffer::new().format_finite(value).to_owned();
        let check = |value: f64| {
            let mut out = Vec::new();
            if write_short_decimal(&mut out, value) {
                assert_eq!(String::from_utf8(out).unwrap(), general(value), "{value:e}");
            }
        };
        let mut random = Random(0x853c_49e6_748f_ea9b);
        let mut taken = 0;
        for _ in 0..400_000 {
            let digits = random.next(17) as i32;
            let places = random.next(8) as i32;
            let value = random.next(10_u64.pow(digits as u32).max(2)) as f64 / 10_f64.powi(places);
            for value in [value, -value, value * 1.000_000_000_000_001] {
                check(value);
            }
            let mut out = Vec::new();
            taken += usize::from(write_short_decimal(&mut out, value));
            check(f64::from_bits(random.next(u64::MAX)));
        }
        for value in [
            0.001,
            0.000_999_999_999,
            0.1,
            0.2,
            0.3,
            0.1 + 0.2,
            0.5,
            1.0,
            2.5,
            1e14 + 0.5,
            999_999_999_999_999.9,
            1e15,
            123_456.789_1,
            9_007_199_254_740_991.0,
            4.35,
            0.0049,
            1.0001,
            1.000_05,
        ] {
            check(value);
            check(-value);
        }
        // The path is taken often enough to matter, and for the bench's floats.
        assert!(taken > 100_000, "{taken}");
        for value in [0.1, 0.5, 3.0, 1024.0, 0.75] {
            assert!(write_short_decimal(&mut Vec::new(), value), "{value}");
        }
    }

    #[test]
    fn a_refused_value_reports_an_error() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no JSON for this"))
            }
        }
        let mut out = Vec::new();
        let error = write_value(&mut out, &vec![Refuses]).expect_err("refused");
        assert_eq!(error.to_string(), "no JSON for this");
    }
}
