//! Compression levels and archive formats as gitlab-runner names them.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::ArchiveError;

/// `ARTIFACT_COMPRESSION_LEVEL` / `CACHE_COMPRESSION_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// Stored, no compression.
    Fastest,
    /// Deflate level 1.
    Fast,
    /// Deflate level 5 (gitlab-runner's fastzip default, not zlib's 6).
    #[default]
    Default,
    /// Deflate level 7.
    Slow,
    /// Deflate level 9.
    Slowest,
}

impl Level {
    /// Strict parse of a level name (case-insensitive, surrounding blanks ignored; empty means default).
    pub fn parse(s: &str) -> Result<Level, ArchiveError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fastest" => Ok(Level::Fastest),
            "fast" => Ok(Level::Fast),
            "" | "default" => Ok(Level::Default),
            "slow" => Ok(Level::Slow),
            "slowest" => Ok(Level::Slowest),
            _ => Err(ArchiveError::UnknownLevel(s.to_owned())),
        }
    }

    /// Lenient parse for a variable value: an unknown level must not fail the job, so it falls back to
    /// the default and returns the warning to print in the job log.
    pub fn from_variable(value: Option<&str>) -> (Level, Option<String>) {
        match value {
            None => (Level::Default, None),
            Some(v) => match Level::parse(v) {
                Ok(level) => (level, None),
                Err(_) => (
                    Level::Default,
                    Some(format!(
                        "compression level {v:?} is invalid, falling back to default \
                         (valid: fastest, fast, default, slow, slowest)"
                    )),
                ),
            },
        }
    }

    /// Deflate level, or `None` for stored entries.
    pub fn deflate_level(self) -> Option<u32> {
        match self {
            Level::Fastest => None,
            Level::Fast => Some(1),
            Level::Default => Some(5),
            Level::Slow => Some(7),
            Level::Slowest => Some(9),
        }
    }
}

/// Archive formats of the Runner API (`artifact_format`) plus what a download can turn out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Zip,
    Gzip,
    /// `tarzstd` (`.tar.zst`); recognised by magic only, not produced here.
    Zstd,
    Raw,
}

impl Format {
    /// The `artifact_format` value; `None` for names GitLab does not accept from this runner.
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "zip" => Some(Format::Zip),
            "gzip" => Some(Format::Gzip),
            "raw" => Some(Format::Raw),
            "tarzstd" => Some(Format::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::Gzip => "gzip",
            Format::Zstd => "tarzstd",
            Format::Raw => "raw",
        }
    }
}

/// Decide how a downloaded artifact is laid out from its first bytes, as the runner does: zstd magic,
/// gzip magic, anything else is treated as zip.
pub fn sniff_format(path: &Path) -> Result<Format, ArchiveError> {
    let mut file = File::open(path).map_err(|e| ArchiveError::io("opening", path, e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match file.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::io("reading", path, e)),
        }
    }
    Ok(sniff_bytes(&magic[..got]))
}

pub(crate) fn sniff_bytes(head: &[u8]) -> Format {
    if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Format::Zstd
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Format::Gzip
    } else {
        Format::Zip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_gitlab_deflate_levels() {
        assert_eq!(Level::parse("fastest").ok(), Some(Level::Fastest));
        assert_eq!(
            Level::parse(" SLOWEST ").ok().and_then(Level::deflate_level),
            Some(9)
        );
        assert_eq!(Level::parse("").ok(), Some(Level::Default));
        assert_eq!(Level::Default.deflate_level(), Some(5));
        assert_eq!(Level::Fast.deflate_level(), Some(1));
        assert_eq!(Level::Slow.deflate_level(), Some(7));
        assert!(Level::parse("turbo").is_err());
        let (level, warning) = Level::from_variable(Some("turbo"));
        assert_eq!(level, Level::Default);
        assert!(warning.is_some_and(|w| w.contains("\"turbo\"")));
        assert_eq!(Level::from_variable(Some("fast")), (Level::Fast, None));
    }

    #[test]
    fn sniffing_follows_magic_bytes() {
        assert_eq!(sniff_bytes(&[0x28, 0xB5, 0x2F, 0xFD, 1]), Format::Zstd);
        assert_eq!(sniff_bytes(&[0x1F, 0x8B, 8]), Format::Gzip);
        assert_eq!(sniff_bytes(b"PK\x03\x04"), Format::Zip);
        assert_eq!(sniff_bytes(b""), Format::Zip);
    }
}
