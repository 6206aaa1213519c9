//! The defensive ZIP reader of FABs received from clients: the central
//! directory parsed with every offset and size bounds-checked, unsafe entry
//! names (absolute, `..`, backslashes, drive letters, control characters)
//! and duplicates refused, the entry count and the declared uncompressed
//! size bounded before anything is inflated, STORED and DEFLATE only, and
//! CRCs and sizes checked on extraction.
//!
//! It never writes archives (that is `zip_write`), never writes files to
//! disk, and knows nothing of what a FAB must contain (the manifest and
//! `pyproject.toml` checks are `verify`'s).

use std::collections::HashSet;
use std::io::Read as _;

use super::{FabError, MAX_ENTRIES, MAX_UNCOMPRESSED};

/// One file entry of the central directory, with where its data starts.
pub(super) struct Entry {
    pub(super) name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    data_start: usize,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn bad(reason: impl Into<String>) -> FabError {
    FabError::InvalidZip(reason.into())
}

fn check_entry_name(name: &str) -> Result<(), FabError> {
    let unsafe_name = |reason: &str| FabError::UnsafeEntryName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(unsafe_name("empty name"));
    }
    if name.contains('\0') {
        return Err(unsafe_name("contains NUL"));
    }
    if name.contains('\\') {
        return Err(unsafe_name("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(unsafe_name("absolute path"));
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(unsafe_name("drive-letter path"));
    }
    let parts: Vec<&str> = name.trim_end_matches('/').split('/').collect();
    if parts.contains(&"..") {
        return Err(unsafe_name("contains a '..' component"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(unsafe_name("contains an empty or '.' component"));
    }
    if name.chars().any(|c| (c as u32) < 32) {
        return Err(unsafe_name("contains a control character"));
    }
    Ok(())
}

/// Parses the central directory defensively. Directory entries are skipped.
pub(super) fn read_entries(bytes: &[u8]) -> Result<Vec<Entry>, FabError> {
    let directory = find_central_directory(bytes)?;
    let mut entries = Vec::with_capacity(directory.count);
    let mut names = HashSet::new();
    let mut total: u64 = 0;
    let mut at = directory.offset;
    for _ in 0..directory.count {
        let header = read_central_header(bytes, at, directory.end)?;
        at = header.next;
        check_entry(&header, &mut names, &mut total)?;
        let data_start = check_local_header(bytes, &header, directory.offset)?;
        let CentralHeader {
            name,
            method,
            crc,
            compressed,
            size,
            ..
        } = header;
        if name.ends_with('/') {
            if size != 0 {
                return Err(bad(format!("directory entry {name:?} has content")));
            }
            continue;
        }
        entries.push(Entry {
            name,
            method,
            crc,
            compressed,
            size,
            data_start,
        });
    }
    Ok(entries)
}

/// Where the central directory is, as the end-of-central-directory record says.
struct CentralDirectory {
    /// How many entries it has.
    count: usize,
    /// Where it starts.
    offset: usize,
    /// Where it ends: the end-of-central-directory record.
    end: usize,
}

/// Finds the end-of-central-directory record and checks what it says.
fn find_central_directory(bytes: &[u8]) -> Result<CentralDirectory, FabError> {
    const EOCD: usize = 22;
    if bytes.len() < EOCD {
        return Err(bad("too short to be a ZIP archive"));
    }
    let lowest = bytes.len().saturating_sub(EOCD + 0xFFFF);
    let eocd = (lowest..=bytes.len() - EOCD)
        .rev()
        .find(|&i| le32(bytes, i) == 0x0605_4b50 && i + EOCD + le16(bytes, i + 20) as usize <= bytes.len())
        .ok_or_else(|| bad("no end-of-central-directory record"))?;
    if le16(bytes, eocd + 4) != 0 || le16(bytes, eocd + 6) != 0 {
        return Err(bad("multi-disk archives are not supported"));
    }
    let count = le16(bytes, eocd + 10) as usize;
    let cd_size = le32(bytes, eocd + 12) as usize;
    let cd_offset = le32(bytes, eocd + 16) as usize;
    if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        return Err(bad("ZIP64 archives are not supported"));
    }
    if le16(bytes, eocd + 8) as usize != count {
        return Err(bad("inconsistent entry counts"));
    }
    if count > MAX_ENTRIES {
        return Err(FabError::TooManyEntries(count));
    }
    if cd_offset.checked_add(cd_size) != Some(eocd) {
        return Err(bad("central directory is not where the end record says"));
    }
    Ok(CentralDirectory {
        count,
        offset: cd_offset,
        end: eocd,
    })
}

/// One central directory header, as recorded.
struct CentralHeader<'a> {
    flags: u16,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    /// Where the entry's local header is.
    local: usize,
    raw_name: &'a [u8],
    name: String,
    /// Where the next header starts.
    next: usize,
}

/// Reads the central directory header at `at`, bounded by `eocd`.
fn read_central_header(bytes: &[u8], at: usize, eocd: usize) -> Result<CentralHeader<'_>, FabError> {
    if at + 46 > eocd || le32(bytes, at) != 0x0201_4b50 {
        return Err(bad("corrupt central directory"));
    }
    let flags = le16(bytes, at + 8);
    let method = le16(bytes, at + 10);
    let crc = le32(bytes, at + 16);
    let compressed = le32(bytes, at + 20) as u64;
    let size = le32(bytes, at + 24) as u64;
    let name_len = le16(bytes, at + 28) as usize;
    let extra_len = le16(bytes, at + 30) as usize;
    let comment_len = le16(bytes, at + 32) as usize;
    let local = le32(bytes, at + 42) as usize;
    let name_end = at + 46 + name_len;
    if name_end + extra_len + comment_len > eocd {
        return Err(bad("corrupt central directory"));
    }
    let raw_name = &bytes[at + 46..name_end];
    let name = if flags & 0x0800 != 0 || raw_name.is_ascii() {
        std::str::from_utf8(raw_name)
            .map_err(|_| bad("an entry name is not valid UTF-8"))?
            .to_string()
    } else {
        return Err(bad("an entry name is not ASCII and not flagged as UTF-8"));
    };
    Ok(CentralHeader {
        flags,
        method,
        crc,
        compressed,
        size,
        local,
        raw_name,
        name,
        next: name_end + extra_len + comment_len,
    })
}

/// Refuses an unsafe or duplicate name, an unsupported entry, and a running
/// uncompressed `total` over the bound.
fn check_entry(header: &CentralHeader<'_>, names: &mut HashSet<String>, total: &mut u64) -> Result<(), FabError> {
    let name = &header.name;
    check_entry_name(name)?;
    if !names.insert(name.clone()) {
        return Err(FabError::DuplicateEntry(name.clone()));
    }
    let unsupported = |reason: &str| FabError::UnsupportedEntry {
        name: name.clone(),
        reason: reason.to_string(),
    };
    if header.flags & 0x0001 != 0 {
        return Err(unsupported("encrypted"));
    }
    if header.method != 0 && header.method != 8 {
        return Err(unsupported("compression method is neither STORED nor DEFLATE"));
    }
    if header.compressed == 0xFFFF_FFFF || header.size == 0xFFFF_FFFF {
        return Err(unsupported("ZIP64 sizes"));
    }
    *total += header.size;
    if *total > MAX_UNCOMPRESSED {
        return Err(FabError::TooBigUncompressed(*total));
    }
    Ok(())
}

/// Checks the entry's local header and data against its central header
/// (both before `cd_offset`); returns where the data starts.
fn check_local_header(bytes: &[u8], header: &CentralHeader<'_>, cd_offset: usize) -> Result<usize, FabError> {
    let (local, name) = (header.local, &header.name);
    if local + 30 > cd_offset || le32(bytes, local) != 0x0403_4b50 {
        return Err(bad(format!("missing local header for {name:?}")));
    }
    let local_name_len = le16(bytes, local + 26) as usize;
    let local_extra_len = le16(bytes, local + 28) as usize;
    let data_start = local + 30 + local_name_len + local_extra_len;
    if bytes.get(local + 30..local + 30 + local_name_len) != Some(header.raw_name) {
        return Err(bad(format!("local header name differs for {name:?}")));
    }
    if data_start as u64 + header.compressed > cd_offset as u64 {
        return Err(bad(format!("data of {name:?} runs past the archive")));
    }
    if header.method == 0 && header.compressed != header.size {
        return Err(bad(format!("stored entry {name:?} has inconsistent sizes")));
    }
    Ok(data_start)
}

/// The uncompressed bytes of an entry, checked against its size and CRC.
pub(super) fn extract(bytes: &[u8], e: &Entry) -> Result<Vec<u8>, FabError> {
    let raw = &bytes[e.data_start..e.data_start + e.compressed as usize];
    let data = if e.method == 0 {
        raw.to_vec()
    } else {
        let mut out = Vec::with_capacity(e.size as usize);
        flate2::read::DeflateDecoder::new(raw)
            .take(e.size + 1)
            .read_to_end(&mut out)
            .map_err(|err| bad(format!("cannot inflate {:?}: {err}", e.name)))?;
        out
    };
    if data.len() as u64 != e.size {
        return Err(bad(format!("{:?} does not have its declared size", e.name)));
    }
    let mut crc = flate2::Crc::new();
    crc.update(&data);
    if crc.sum() != e.crc {
        return Err(bad(format!("CRC mismatch for {:?}", e.name)));
    }
    Ok(data)
}
