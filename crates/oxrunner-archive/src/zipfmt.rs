//! Byte layout of the zip records we write (APPNOTE 6.3.x). We write headers ourselves because entries are
//! compressed out of order on worker threads and must be emitted as pre-compressed data, which also lets us
//! stream to a non-seekable sink: sizes are either known before the local header (one-chunk entries) or
//! follow in a data descriptor.

use std::io::{self, Write};

pub(crate) const METHOD_STORED: u16 = 0;
pub(crate) const METHOD_DEFLATED: u16 = 8;

const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
const FLAG_UTF8: u16 = 1 << 11;
const VERSION_DEFAULT: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// Upper byte 3 = Unix, so readers (unzip, Go's archive/zip) take the mode from the external attributes.
const VERSION_MADE_BY: u16 = (3 << 8) | VERSION_ZIP64;
const U32_MAX: u64 = 0xFFFF_FFFF;
const EXTRA_ZIP64: u16 = 0x0001;
const EXTRA_TIMESTAMP: u16 = 0x5455;

pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;

/// Everything the central directory needs about one written entry.
pub(crate) struct CentralRecord {
    pub name: Vec<u8>,
    pub method: u16,
    pub descriptor: bool,
    pub crc: u32,
    pub compressed: u64,
    pub uncompressed: u64,
    pub offset: u64,
    /// Full st_mode (type + permission bits).
    pub mode: u32,
    pub mtime: i64,
}

/// Header fields shared by local and central headers.
pub(crate) struct LocalHeader<'a> {
    pub name: &'a [u8],
    pub method: u16,
    pub mtime: i64,
    /// `None` when sizes follow in a data descriptor.
    pub sizes: Option<(u32, u64, u64)>,
    /// Only meaningful with a data descriptor: reserve 64-bit sizes.
    pub zip64: bool,
}

fn flags(name: &[u8], descriptor: bool) -> u16 {
    let mut f = 0;
    if !name.is_ascii() {
        f |= FLAG_UTF8;
    }
    if descriptor {
        f |= FLAG_DATA_DESCRIPTOR;
    }
    f
}

fn timestamp_u32(mtime: i64) -> u32 {
    u32::try_from(mtime.max(0)).unwrap_or(u32::MAX)
}

fn len_u16(n: usize) -> io::Result<u16> {
    u16::try_from(n)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "zip field longer than 65535 bytes"))
}

/// Returns the number of bytes written.
pub(crate) fn write_local_header(w: &mut impl Write, h: &LocalHeader<'_>) -> io::Result<u64> {
    let (date, time) = dos_datetime(h.mtime);
    let mut extra = Vec::with_capacity(29);
    extra.extend_from_slice(&EXTRA_TIMESTAMP.to_le_bytes());
    extra.extend_from_slice(&5u16.to_le_bytes());
    extra.push(1);
    extra.extend_from_slice(&timestamp_u32(h.mtime).to_le_bytes());
    let (crc, csize, usize_, version) = match h.sizes {
        Some((crc, c, u)) => (crc, c as u32, u as u32, VERSION_DEFAULT),
        None if h.zip64 => {
            extra.extend_from_slice(&EXTRA_ZIP64.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&[0u8; 16]);
            (0, u32::MAX, u32::MAX, VERSION_ZIP64)
        }
        None => (0, 0, 0, VERSION_DEFAULT),
    };
    let mut buf = Vec::with_capacity(30 + h.name.len() + extra.len());
    buf.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&flags(h.name, h.sizes.is_none()).to_le_bytes());
    buf.extend_from_slice(&h.method.to_le_bytes());
    buf.extend_from_slice(&time.to_le_bytes());
    buf.extend_from_slice(&date.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(&csize.to_le_bytes());
    buf.extend_from_slice(&usize_.to_le_bytes());
    buf.extend_from_slice(&len_u16(h.name.len())?.to_le_bytes());
    buf.extend_from_slice(&len_u16(extra.len())?.to_le_bytes());
    buf.extend_from_slice(h.name);
    buf.extend_from_slice(&extra);
    w.write_all(&buf)?;
    Ok(buf.len() as u64)
}

pub(crate) fn write_data_descriptor(
    w: &mut impl Write,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    zip64: bool,
) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(24);
    buf.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    if zip64 {
        buf.extend_from_slice(&compressed.to_le_bytes());
        buf.extend_from_slice(&uncompressed.to_le_bytes());
    } else {
        buf.extend_from_slice(&(compressed as u32).to_le_bytes());
        buf.extend_from_slice(&(uncompressed as u32).to_le_bytes());
    }
    w.write_all(&buf)?;
    Ok(buf.len() as u64)
}

/// Central directory entries plus the end records; returns bytes written.
pub(crate) fn write_central_directory(
    w: &mut impl Write,
    records: &[CentralRecord],
    cd_offset: u64,
    comment: &[u8],
) -> io::Result<u64> {
    let mut written = 0u64;
    for r in records {
        let mut z64 = Vec::new();
        let usize_ = if r.uncompressed >= U32_MAX {
            z64.extend_from_slice(&r.uncompressed.to_le_bytes());
            u32::MAX
        } else {
            r.uncompressed as u32
        };
        let csize = if r.compressed >= U32_MAX {
            z64.extend_from_slice(&r.compressed.to_le_bytes());
            u32::MAX
        } else {
            r.compressed as u32
        };
        let offset = if r.offset >= U32_MAX {
            z64.extend_from_slice(&r.offset.to_le_bytes());
            u32::MAX
        } else {
            r.offset as u32
        };
        let mut extra = Vec::with_capacity(9 + 4 + z64.len());
        extra.extend_from_slice(&EXTRA_TIMESTAMP.to_le_bytes());
        extra.extend_from_slice(&5u16.to_le_bytes());
        extra.push(1);
        extra.extend_from_slice(&timestamp_u32(r.mtime).to_le_bytes());
        let version = if z64.is_empty() && !r.descriptor_zip64() {
            VERSION_DEFAULT
        } else {
            VERSION_ZIP64
        };
        if !z64.is_empty() {
            extra.extend_from_slice(&EXTRA_ZIP64.to_le_bytes());
            extra.extend_from_slice(&len_u16(z64.len())?.to_le_bytes());
            extra.extend_from_slice(&z64);
        }
        let (date, time) = dos_datetime(r.mtime);
        let mut external = r.mode << 16;
        if r.mode & 0o170000 == S_IFDIR {
            external |= 0x10; // MS-DOS directory bit, for readers that ignore Unix modes
        }
        let mut buf = Vec::with_capacity(46 + r.name.len() + extra.len());
        buf.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        buf.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
        buf.extend_from_slice(&version.to_le_bytes());
        buf.extend_from_slice(&flags(&r.name, r.descriptor).to_le_bytes());
        buf.extend_from_slice(&r.method.to_le_bytes());
        buf.extend_from_slice(&time.to_le_bytes());
        buf.extend_from_slice(&date.to_le_bytes());
        buf.extend_from_slice(&r.crc.to_le_bytes());
        buf.extend_from_slice(&csize.to_le_bytes());
        buf.extend_from_slice(&usize_.to_le_bytes());
        buf.extend_from_slice(&len_u16(r.name.len())?.to_le_bytes());
        buf.extend_from_slice(&len_u16(extra.len())?.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes()); // comment length
        buf.extend_from_slice(&0u16.to_le_bytes()); // disk number start
        buf.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        buf.extend_from_slice(&external.to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(&r.name);
        buf.extend_from_slice(&extra);
        w.write_all(&buf)?;
        written += buf.len() as u64;
    }

    let cd_size = written;
    let count = records.len() as u64;
    let comment = &comment[..comment.len().min(0xFFFF)];
    let mut end = Vec::with_capacity(22 + 56 + 20 + comment.len());
    let needs_zip64 = count >= 0xFFFF || cd_size >= U32_MAX || cd_offset >= U32_MAX;
    if needs_zip64 {
        let eocd64_offset = cd_offset + cd_size;
        end.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        end.extend_from_slice(&44u64.to_le_bytes());
        end.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
        end.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&cd_size.to_le_bytes());
        end.extend_from_slice(&cd_offset.to_le_bytes());
        end.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&eocd64_offset.to_le_bytes());
        end.extend_from_slice(&1u32.to_le_bytes());
    }
    let count16 = u16::try_from(count).unwrap_or(u16::MAX);
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    end.extend_from_slice(&count16.to_le_bytes());
    end.extend_from_slice(&count16.to_le_bytes());
    end.extend_from_slice(&(cd_size.min(U32_MAX) as u32).to_le_bytes());
    end.extend_from_slice(&(cd_offset.min(U32_MAX) as u32).to_le_bytes());
    end.extend_from_slice(&len_u16(comment.len())?.to_le_bytes());
    end.extend_from_slice(comment);
    w.write_all(&end)?;
    Ok(written + end.len() as u64)
}

impl CentralRecord {
    fn descriptor_zip64(&self) -> bool {
        self.descriptor && (self.compressed >= U32_MAX || self.uncompressed >= U32_MAX)
    }
}

/// MS-DOS (date, time) in UTC, clamped to the representable 1980..=2107 range.
pub(crate) fn dos_datetime(mtime: i64) -> (u16, u16) {
    const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
    const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
    let t = mtime.clamp(MIN, MAX);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let date = (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16;
    let time =
        (((secs / 3600) as u16) << 11) | ((((secs % 3600) / 60) as u16) << 5) | ((secs % 60) / 2) as u16;
    (date, time)
}

/// Inverse of [`dos_datetime`] for archives without an extended timestamp (treated as UTC).
pub(crate) fn unix_from_dos(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> i64 {
    days_from_civil(i64::from(year), i64::from(month), i64::from(day)) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second)
}

// Howard Hinnant's days/civil conversions (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time_round_trips_even_seconds() {
        for t in [315_532_800i64, 1_700_000_000, 1_234_567_890, 4_102_444_800] {
            let (date, time) = dos_datetime(t);
            let y = 1980 + (date >> 9);
            let m = ((date >> 5) & 0xF) as u8;
            let d = (date & 0x1F) as u8;
            let back = unix_from_dos(
                y,
                m,
                d,
                (time >> 11) as u8,
                ((time >> 5) & 0x3F) as u8,
                ((time & 0x1F) * 2) as u8,
            );
            assert_eq!(back, t - t % 2, "t={t}");
        }
        assert_eq!(dos_datetime(0), dos_datetime(315_532_800));
    }

    /// More than 65,535 entries need the zip64 end records. Built in memory from the same header
    /// writers the archiver uses (66k real files would dominate the test run), then checked by Info-ZIP
    /// and by the zip crate.
    #[test]
    fn many_entries_get_zip64_end_records_that_readers_accept() {
        let mut out = Vec::new();
        let mut records = Vec::new();
        for i in 0..66_000u32 {
            let name = format!("d{:02}/f{:03}", i / 1000, i % 1000).into_bytes();
            let offset = out.len() as u64;
            let data: &[u8] = if i == 65_999 { b"last" } else { b"" };
            let crc = crc32fast::hash(data);
            let header = LocalHeader {
                name: &name,
                method: METHOD_STORED,
                mtime: 1_700_000_000,
                sizes: Some((crc, data.len() as u64, data.len() as u64)),
                zip64: false,
            };
            write_local_header(&mut out, &header).unwrap();
            out.extend_from_slice(data);
            records.push(CentralRecord {
                name,
                method: METHOD_STORED,
                descriptor: false,
                crc,
                compressed: data.len() as u64,
                uncompressed: data.len() as u64,
                offset,
                mode: S_IFREG | 0o644,
                mtime: 1_700_000_000,
            });
        }
        let cd_offset = out.len() as u64;
        write_central_directory(&mut out, &records, cd_offset, b"comment").unwrap();
        assert!(
            out.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]),
            "zip64 EOCD record missing"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.zip");
        std::fs::write(&path, &out).unwrap();
        let status = std::process::Command::new("unzip")
            .arg("-tq")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "unzip -t rejected the zip64 archive");
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(zip.len(), 66_000);
        assert_eq!(zip.comment(), b"comment");
        let mut last = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("d65/f999").unwrap(), &mut last).unwrap();
        assert_eq!(last, "last");
    }

    /// Entries streamed with a data descriptor, in both the 32-bit and the 64-bit (huge file) form.
    #[test]
    fn data_descriptor_entries_in_both_widths_are_accepted() {
        let mut out = Vec::new();
        let mut records = Vec::new();
        for (name, zip64) in [("small.txt", false), ("huge.bin", true)] {
            let data = format!("contents of {name}\n").into_bytes();
            let crc = crc32fast::hash(&data);
            let offset = out.len() as u64;
            let header = LocalHeader {
                name: name.as_bytes(),
                method: METHOD_STORED,
                mtime: 1_700_000_000,
                sizes: None,
                zip64,
            };
            write_local_header(&mut out, &header).unwrap();
            out.extend_from_slice(&data);
            write_data_descriptor(&mut out, crc, data.len() as u64, data.len() as u64, zip64).unwrap();
            records.push(CentralRecord {
                name: name.as_bytes().to_vec(),
                method: METHOD_STORED,
                descriptor: true,
                crc,
                compressed: data.len() as u64,
                uncompressed: data.len() as u64,
                offset,
                mode: S_IFREG | 0o600,
                mtime: 1_700_000_000,
            });
        }
        let cd_offset = out.len() as u64;
        write_central_directory(&mut out, &records, cd_offset, b"").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dd.zip");
        std::fs::write(&path, &out).unwrap();
        let output = std::process::Command::new("unzip")
            .arg("-t")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("huge.bin").unwrap(), &mut text).unwrap();
        assert_eq!(text, "contents of huge.bin\n");
    }
}
