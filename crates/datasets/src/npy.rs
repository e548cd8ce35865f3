//! NumPy `.npy` arrays of `uint8`, and the `.npz` archives that hold them.
//!
//! An `.npy` file (format spec: `numpy/lib/format.py`, "NEP 1") is the magic
//! `\x93NUMPY`, a major and minor version byte, the header length (`u16`
//! little-endian in version 1, `u32` in versions 2 and 3), then a Python dict
//! literal such as `{'descr': '|u1', 'fortran_order': False, 'shape': (60000, 28, 28), }`
//! padded with spaces and a newline, then the elements. This module parses that
//! header itself (a tiny tokenizer for the dict, strings, booleans and integer
//! tuples) and accepts only `uint8` in C order, which is what Keras's
//! `mnist.npz` holds.
//!
//! An `.npz` is a zip archive of `.npy` files (stored by `np.savez`, deflated by
//! `np.savez_compressed`); both are read through the [`zip`] crate. Before an
//! array is allocated, its size is checked against the zip entry's declared size
//! and against what its compressed bytes can hold.
//!
//! ```
//! use convnet_datasets::npy::parse_header;
//! let mut file = b"\x93NUMPY\x01\x00".to_vec();
//! let dict = b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }\n";
//! file.extend_from_slice(&(dict.len() as u16).to_le_bytes());
//! file.extend_from_slice(dict);
//! let header = parse_header("a.npy", &file)?;
//! assert_eq!(header.shape, vec![2, 3]);
//! assert_eq!(header.len, file.len());
//! # Ok::<(), convnet_datasets::Error>(())
//! ```

use crate::idx::{MAX_DATA_BYTES, MAX_DEFLATE_RATIO};
use crate::{Error, Result};
use std::io::{Cursor, Read};

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// The longest header dict accepted (NumPy itself refuses headers over 10,000 bytes by default).
pub const MAX_HEADER_LEN: usize = 1 << 16;

/// A parsed `.npy` header of a `uint8`, C-order array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Format version `(major, minor)`: 1, 2 or 3 major.
    pub version: (u8, u8),
    /// The array's dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// Bytes from the start of the file to the first element.
    pub len: usize,
    /// Bytes of element data (`shape`'s product: one byte per element).
    pub data_len: usize,
}

fn npy_err(file: &str, problem: impl Into<String>) -> Error {
    Error::Npy { file: file.to_string(), problem: problem.into() }
}

/// Length of the fixed prefix (magic, version, header length) for a major version.
fn prefix_len(major: u8) -> Option<usize> {
    match major {
        1 => Some(10),
        2 | 3 => Some(12),
        _ => None,
    }
}

/// Parses the prefix: returns `(version, prefix length, dict length)`.
fn parse_prefix(file: &str, bytes: &[u8]) -> Result<((u8, u8), usize, usize)> {
    if bytes.len() < 8 {
        return Err(npy_err(file, format!("truncated header: {} bytes, the prefix needs at least 10", bytes.len())));
    }
    if &bytes[..6] != MAGIC {
        return Err(npy_err(file, format!("not an .npy array: magic {:02x?}, expected \\x93NUMPY", &bytes[..6])));
    }
    let version = (bytes[6], bytes[7]);
    let prefix = prefix_len(version.0)
        .ok_or_else(|| npy_err(file, format!("unsupported .npy version {}.{}", version.0, version.1)))?;
    let len_bytes = bytes
        .get(8..prefix)
        .ok_or_else(|| npy_err(file, format!("truncated header: {} bytes, the prefix needs {prefix}", bytes.len())))?;
    let dict_len = if prefix == 10 {
        u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize
    } else {
        u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize
    };
    if dict_len > MAX_HEADER_LEN {
        return Err(npy_err(file, format!("header of {dict_len} bytes exceeds the {MAX_HEADER_LEN}-byte limit")));
    }
    Ok((version, prefix, dict_len))
}

/// Parses an `.npy` header at the start of `bytes` (which may hold only the
/// header) and checks that the array is `uint8` in C order; `file` names the
/// array in errors.
///
/// ```
/// use convnet_datasets::{npy::parse_header, Error};
/// let mut file = b"\x93NUMPY\x01\x00".to_vec();
/// let dict = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
/// file.extend_from_slice(&(dict.len() as u16).to_le_bytes());
/// file.extend_from_slice(dict);
/// let err = parse_header("x.npy", &file).unwrap_err();
/// assert!(err.to_string().contains("uint8"), "{err}");
/// ```
pub fn parse_header(file: &str, bytes: &[u8]) -> Result<NpyHeader> {
    let (version, prefix, dict_len) = parse_prefix(file, bytes)?;
    let dict = bytes.get(prefix..prefix + dict_len).ok_or_else(|| {
        npy_err(file, format!("truncated header: {} bytes, the header needs {}", bytes.len(), prefix + dict_len))
    })?;
    let dict = std::str::from_utf8(dict).map_err(|_| npy_err(file, "header is not UTF-8 text"))?;
    let (descr, fortran, shape) = parse_dict(dict).map_err(|p| npy_err(file, format!("bad header dict: {p}")))?;
    if !matches!(descr.as_str(), "|u1" | "<u1" | ">u1" | "=u1" | "u1") {
        return Err(npy_err(file, format!("dtype '{descr}' is not uint8 ('|u1')")));
    }
    if fortran && shape.len() > 1 {
        return Err(npy_err(file, "Fortran-order arrays are not supported (save in C order)"));
    }
    let overflow = || npy_err(file, format!("shape {shape:?} overflows (more than {MAX_DATA_BYTES} bytes)"));
    let data_len = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    if data_len > MAX_DATA_BYTES {
        return Err(overflow());
    }
    let shape = shape.iter().map(|&d| usize::try_from(d).map_err(|_| overflow())).collect::<Result<Vec<_>>>()?;
    Ok(NpyHeader { version, shape, len: prefix + dict_len, data_len: data_len as usize })
}

/// One token of a header dict.
#[derive(Debug, PartialEq)]
enum Tok<'a> {
    Punct(char),
    Str(&'a str),
    Int(u64),
    Ident(&'a str),
}

fn tokenize(s: &str) -> std::result::Result<Vec<Tok<'_>>, String> {
    let mut toks = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' | b'}' | b'(' | b')' | b':' | b',' => {
                toks.push(Tok::Punct(c as char));
                i += 1;
            }
            b'\'' | b'"' => {
                let end = s[i + 1..].find(c as char).ok_or("unterminated string")? + i + 1;
                toks.push(Tok::Str(&s[i + 1..end]));
                i = end + 1;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let v: u64 = s[start..i].parse().map_err(|_| format!("integer {} too large", &s[start..i]))?;
                if i < b.len() && b[i] == b'L' {
                    i += 1; // Python 2 long suffix
                }
                toks.push(Tok::Int(v));
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                toks.push(Tok::Ident(&s[start..i]));
            }
            _ => return Err(format!("unexpected character {:?}", s[i..].chars().next().unwrap_or('?'))),
        }
        if toks.len() > 4096 {
            return Err("too many tokens".into());
        }
    }
    Ok(toks)
}

/// Parses `{'descr': str, 'fortran_order': bool, 'shape': (int, ...)}`, all
/// three keys exactly once and nothing else, as NumPy requires.
fn parse_dict(s: &str) -> std::result::Result<(String, bool, Vec<u64>), String> {
    let toks = tokenize(s)?;
    let mut it = toks.iter().peekable();
    let expect = |want: char, it: &mut std::iter::Peekable<std::slice::Iter<'_, Tok<'_>>>| match it.next() {
        Some(Tok::Punct(c)) if *c == want => Ok(()),
        other => Err(format!("expected '{want}', found {other:?}")),
    };
    expect('{', &mut it)?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        match it.next() {
            Some(Tok::Punct('}')) => break,
            Some(Tok::Str(key)) => {
                expect(':', &mut it)?;
                match *key {
                    "descr" => match it.next() {
                        Some(Tok::Str(d)) if descr.is_none() => descr = Some(d.to_string()),
                        other => return Err(format!("bad or repeated 'descr': {other:?}")),
                    },
                    "fortran_order" => match it.next() {
                        Some(Tok::Ident(v @ ("True" | "False"))) if fortran.is_none() => fortran = Some(*v == "True"),
                        other => return Err(format!("bad or repeated 'fortran_order': {other:?}")),
                    },
                    "shape" => {
                        if shape.is_some() {
                            return Err("repeated 'shape'".into());
                        }
                        expect('(', &mut it)?;
                        let mut dims = Vec::new();
                        loop {
                            match it.next() {
                                Some(Tok::Punct(')')) => break,
                                Some(Tok::Int(v)) => {
                                    dims.push(*v);
                                    match it.next() {
                                        Some(Tok::Punct(',')) => {}
                                        Some(Tok::Punct(')')) => break,
                                        other => return Err(format!("expected ',' or ')' in shape, found {other:?}")),
                                    }
                                }
                                other => return Err(format!("expected an integer in shape, found {other:?}")),
                            }
                            if dims.len() > 32 {
                                return Err("shape has more than 32 dimensions".into());
                            }
                        }
                        shape = Some(dims);
                    }
                    other => return Err(format!("unexpected key '{other}'")),
                }
                match it.next() {
                    Some(Tok::Punct(',')) => {}
                    Some(Tok::Punct('}')) => break,
                    other => return Err(format!("expected ',' or '}}', found {other:?}")),
                }
            }
            other => return Err(format!("expected a key or '}}', found {other:?}")),
        }
    }
    if let Some(t) = it.next() {
        return Err(format!("unexpected {t:?} after the dict"));
    }
    match (descr, fortran, shape) {
        (Some(d), Some(f), Some(s)) => Ok((d, f, s)),
        (d, f, _) => Err(format!(
            "missing key '{}'",
            if d.is_none() {
                "descr"
            } else if f.is_none() {
                "fortran_order"
            } else {
                "shape"
            }
        )),
    }
}

/// Reads one `uint8` array from the `.npy` stream `r`, whose total size is
/// `declared` bytes and which can hold at most `limit` bytes (what its
/// compressed form can expand to). Returns the header and exactly
/// `header.data_len` bytes of data.
pub(crate) fn read_array(file: &str, r: &mut impl Read, declared: u64, limit: u64) -> Result<(NpyHeader, Vec<u8>)> {
    let mut head = vec![0u8; 12];
    let got = read_up_to(file, r, &mut head)?;
    head.truncate(got);
    let (_, prefix, dict_len) = parse_prefix(file, &head)?;
    let need = prefix + dict_len;
    if need as u64 > declared {
        return Err(npy_err(
            file,
            format!("truncated header: the array holds {declared} bytes, the header needs {need}"),
        ));
    }
    head.resize(need.max(got), 0);
    let more = read_up_to(file, r, &mut head[got..need.max(got)])?;
    head.truncate(got + more);
    let header = parse_header(file, &head)?;
    let total = header.len as u64 + header.data_len as u64;
    if total > limit {
        return Err(Error::Implausible { file: file.to_string(), claimed: total, compressed: limit, limit });
    }
    let expected = header.data_len as u64;
    let actual = declared.saturating_sub(header.len as u64);
    if actual < expected {
        return Err(Error::TruncatedData { file: file.to_string(), expected, actual });
    }
    if actual > expected {
        return Err(Error::TrailingData { file: file.to_string(), expected, extra: actual - expected });
    }
    let mut data = Vec::with_capacity(header.data_len + 1);
    data.extend_from_slice(&head[header.len.min(head.len())..]);
    r.take((expected + 1).saturating_sub(data.len() as u64))
        .read_to_end(&mut data)
        .map_err(|e| npy_err(file, format!("cannot read the data: {e}")))?;
    if (data.len() as u64) < expected {
        return Err(Error::TruncatedData { file: file.to_string(), expected, actual: data.len() as u64 });
    }
    if data.len() as u64 > expected {
        return Err(Error::TrailingData { file: file.to_string(), expected, extra: data.len() as u64 - expected });
    }
    Ok((header, data))
}

fn read_up_to(file: &str, r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(npy_err(file, format!("cannot read: {e}"))),
        }
    }
    Ok(filled)
}

/// Parses a whole `.npy` file of `uint8` held in memory; returns its shape and elements.
///
/// ```
/// use convnet_datasets::npy::{encode, parse};
/// let file = encode(&[2, 2], &[1, 2, 3, 4])?;
/// assert_eq!(parse("a.npy", &file)?, (vec![2, 2], vec![1, 2, 3, 4]));
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
pub fn parse(file: &str, bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    let (header, data) = read_array(file, &mut Cursor::new(bytes), bytes.len() as u64, bytes.len() as u64)?;
    Ok((header.shape, data))
}

/// Encodes a `uint8` array of `shape` as a version 1.0 `.npy` file (C order,
/// header padded to a multiple of 64 bytes as NumPy writes it).
///
/// ```
/// use convnet_datasets::npy::encode;
/// let file = encode(&[3], &[7, 8, 9])?;
/// assert_eq!(file.len(), 128 + 3); // header padded to a multiple of 64
/// assert!(encode(&[4], &[7, 8, 9]).is_err());
/// # Ok::<(), convnet_datasets::Error>(())
/// ```
pub fn encode(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(data.len()) {
        return Err(Error::InvalidArgument(format!("shape {shape:?} does not hold {} elements", data.len())));
    }
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let dict_len = u16::try_from(dict.len())
        .map_err(|_| Error::InvalidArgument(format!("shape {shape:?} makes a header too long")))?;
    let mut out = Vec::with_capacity(10 + dict.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&dict_len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// The most bytes a zip entry stored with `method` and `compressed` bytes can hold.
pub(crate) fn entry_limit(method: zip::CompressionMethod, compressed: u64) -> u64 {
    if method == zip::CompressionMethod::Stored {
        compressed
    } else {
        compressed.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(64)
    }
}
