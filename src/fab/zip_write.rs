//! The ZIP writer of FABs: STORED entries laid out byte for byte as Python's
//! `zipfile` lays them out when Flower's `flwr build` writes a FAB.
//!
//! It is written by hand, not with a ZIP crate, because FABs must be
//! byte-identical to Flower's (equal inputs, equal sha256): every header
//! field, the fixed date (Flower's `FAB_DATE`), the mode bits and the absence
//! of extra fields are chosen to match `zipfile`, which no general-purpose
//! writer promises. It never compresses, never writes ZIP64 records (the
//! builder refuses FABs that would need them), never reads archives (that is
//! `zip_read`) and never decides which files go in (that is the builder).

/// DOS date of Flower's `FAB_DATE` (2024-10-01); the time is 00:00:00.
const FAB_DOS_DATE: u16 = ((2024 - 1980) << 9) | (10 << 5) | 1;

/// Writes entries as Python's `zipfile.writestr(ZipInfo(name, FAB_DATE), data)`
/// does on a seekable buffer: STORED, version 2.0 made on Unix, mode 0600,
/// UTF-8 flag only for non-ASCII names, no extra fields, no comments.
pub(super) fn write_stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let flags: u16 = if name.is_ascii() { 0 } else { 0x0800 };
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let offset = out.len() as u32;
        let size = data.len() as u32;

        u32le(&mut out, 0x0403_4b50);
        u16le(&mut out, 20); // version needed
        u16le(&mut out, flags);
        u16le(&mut out, 0); // STORED
        u16le(&mut out, 0); // time 00:00:00
        u16le(&mut out, FAB_DOS_DATE);
        u32le(&mut out, crc);
        u32le(&mut out, size);
        u32le(&mut out, size);
        u16le(&mut out, name.len() as u16);
        u16le(&mut out, 0); // extra
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        u32le(&mut central, 0x0201_4b50);
        u16le(&mut central, (3 << 8) | 20); // made by: Unix, 2.0
        u16le(&mut central, 20);
        u16le(&mut central, flags);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, FAB_DOS_DATE);
        u32le(&mut central, crc);
        u32le(&mut central, size);
        u32le(&mut central, size);
        u16le(&mut central, name.len() as u16);
        u16le(&mut central, 0); // extra
        u16le(&mut central, 0); // comment
        u16le(&mut central, 0); // disk
        u16le(&mut central, 0); // internal attributes
        u32le(&mut central, 0o600 << 16); // external attributes
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}
