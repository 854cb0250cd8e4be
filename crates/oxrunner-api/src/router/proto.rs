//! The bytes of the job router's one RPC, `gitlab.agent.job_router.rpc.JobRouter/GetJob`: protobuf messages with a
//! single `bytes` field 1 (`job_request` / `job_response`), gRPC's 5-byte message prefix, and gRPC status codes
//! (from `grpc-status`, or from the HTTP status when a proxy answered instead of the server).

use std::fmt;

/// Largest answer accepted, gRPC's default receive limit (gitlab-runner does not raise it).
pub(crate) const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    pub(crate) fn from_number(n: u32) -> Code {
        use Code::*;
        const ALL: [Code; 17] = [
            Ok,
            Canceled,
            Unknown,
            InvalidArgument,
            DeadlineExceeded,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            ResourceExhausted,
            FailedPrecondition,
            Aborted,
            OutOfRange,
            Unimplemented,
            Internal,
            Unavailable,
            DataLoss,
            Unauthenticated,
        ];
        usize::try_from(n)
            .ok()
            .and_then(|i| ALL.get(i).copied())
            .unwrap_or(Unknown)
    }

    /// The code a gRPC client reports when the answer is an HTTP error without `grpc-status` (gRPC's
    /// "HTTP to gRPC status code mapping").
    pub(crate) fn from_http(status: u16) -> Code {
        match status {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502..=504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // gRPC's own names, as grpc-go prints them in `rpc error: code = ...`.
        let name = match self {
            Code::Ok => "OK",
            Code::Canceled => "Canceled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Aborted => "Aborted",
            Code::OutOfRange => "OutOfRange",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        };
        f.write_str(name)
    }
}

/// A protobuf message whose field 1 is `bytes`, framed as one gRPC message (uncompressed).
pub fn encode_message(field1: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(field1.len() + 16);
    if !field1.is_empty() {
        // proto3 leaves a default (empty) field out.
        msg.push(0x0a); // field 1, wire type 2 (length-delimited)
        put_varint(&mut msg, field1.len() as u64);
        msg.extend_from_slice(field1);
    }
    let mut framed = Vec::with_capacity(msg.len() + 5);
    framed.push(0); // not compressed
    framed.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&msg);
    framed
}

/// The one gRPC message of `body`, unframed: `Err` with what is wrong.
pub fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or_else(|| format!("a gRPC message needs a 5-byte prefix, got {} bytes", body.len()))?;
    if head[0] != 0 {
        return Err("the message is compressed, though no compression was offered".to_string());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(format!(
            "the message has {len} bytes, more than the {MAX_MESSAGE} accepted"
        ));
    }
    if rest.len() != len {
        return Err(format!(
            "the prefix announces {len} bytes but {} follow",
            rest.len()
        ));
    }
    Ok(rest)
}

/// Field 1 (`bytes`) of a protobuf message; other fields are skipped as protobuf requires, a later field 1
/// replaces an earlier one. Empty when absent.
pub fn decode_field1(mut msg: &[u8]) -> Result<&[u8], String> {
    let mut found: &[u8] = &[];
    while !msg.is_empty() {
        let key = take_varint(&mut msg)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                take_varint(&mut msg)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                msg = msg.get(n..).ok_or("truncated fixed-size field")?;
            }
            2 => {
                let len = usize::try_from(take_varint(&mut msg)?).map_err(|_| "field too long")?;
                let (value, rest) = msg
                    .split_at_checked(len)
                    .ok_or("truncated length-delimited field")?;
                if field == 1 {
                    found = value;
                }
                msg = rest;
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        }
    }
    Ok(found)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".to_string())
}

/// `grpc-message` is percent-encoded (gRPC's spec); undecodable bytes are kept as they came.
pub fn decode_grpc_message(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && let Ok(text) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(text, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `grpc-message` encoding of `text` (for servers: the fake job router).
pub fn encode_grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_bytes_field() {
        for payload in [&b""[..], b"{}", &[7u8; 300][..]] {
            let framed = encode_message(payload);
            let msg = unframe(&framed).unwrap_or_default();
            assert_eq!(decode_field1(msg).ok(), Some(payload));
        }
        // 300 bytes need a two-byte length varint.
        assert_eq!(&encode_message(&[7u8; 300])[5..8], &[0x0a, 0xac, 0x02]);
    }

    #[test]
    fn skips_unknown_fields_and_rejects_bad_frames() {
        // field 2 varint 150, field 3 fixed64, field 1 "hi".
        let msg = [
            0x10, 0x96, 0x01, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 2, b'h', b'i',
        ];
        assert_eq!(decode_field1(&msg).ok(), Some(&b"hi"[..]));
        assert!(decode_field1(&[0x0a, 5, b'x']).is_err());
        assert!(unframe(&[1, 0, 0, 0, 0]).is_err(), "compressed");
        assert!(unframe(&[0, 0, 0, 0, 3, 1]).is_err(), "short");
        assert!(unframe(&[0, 0]).is_err());
    }

    #[test]
    fn status_codes_and_messages() {
        assert_eq!(Code::from_number(12), Code::Unimplemented);
        assert_eq!(Code::from_number(14), Code::Unavailable);
        assert_eq!(Code::from_number(99), Code::Unknown);
        assert_eq!(Code::from_http(503), Code::Unavailable);
        assert_eq!(Code::from_http(404), Code::Unimplemented);
        let text = "Job Router is not available: 100% off";
        assert_eq!(decode_grpc_message(encode_grpc_message(text).as_bytes()), text);
    }
}
