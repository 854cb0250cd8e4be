//! WebSocket framing of a terminal, as Workhorse and gitlab-terminal speak it.
//!
//! - `terminal.gitlab.com`: binary messages carry raw terminal bytes both ways.
//! - `base64.terminal.gitlab.com`: text messages carry the bytes base64-encoded both ways.
//!
//! Neither has a resize message (GitLab's terminal never sends one). As an extension of ours, for clients other than
//! Workhorse (which never asks for it here), `channel.k8s.io` and `base64.channel.k8s.io` are accepted too, in the
//! layout of Kubernetes' exec channels: the first byte of a message is the channel (0 stdin,
//! 1 stdout, 4 resize with `{"Width":W,"Height":H}`; the base64 variant writes the channel as an ASCII digit), which
//! lets a client resize. A client that asks for no known subprotocol gets the plain `terminal.gitlab.com` framing,
//! as with gitlab-runner.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oxrunner_core::TermSize;

/// Subprotocols in order of preference.
pub const SUBPROTOCOLS: [&str; 4] = [
    "terminal.gitlab.com",
    "base64.terminal.gitlab.com",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// How messages are framed on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// Channel-prefixed messages (`channel.k8s.io`).
    pub channels: bool,
    /// Text messages with base64 payloads.
    pub base64: bool,
}

/// What one client message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the shell.
    Stdin(Vec<u8>),
    /// A new window size.
    Resize(TermSize),
    /// Nothing to do (an empty message, another channel).
    Ignore,
}

/// A client message that does not follow the framing; the message is dropped, the terminal stays open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The payload is not valid base64.
    #[error("the message is not valid base64")]
    Base64,
    /// A resize message that is not `{"Width":W,"Height":H}` with sizes from 1 to 65535.
    #[error("the resize message is not {{\"Width\":W,\"Height\":H}}")]
    Resize,
}

#[derive(serde::Deserialize)]
struct ResizeMsg {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

impl Framing {
    /// The framing of a negotiated subprotocol (`None`: none was agreed).
    pub fn for_protocol(protocol: Option<&str>) -> Framing {
        match protocol {
            Some("base64.terminal.gitlab.com") => Framing {
                channels: false,
                base64: true,
            },
            Some("channel.k8s.io") => Framing {
                channels: true,
                base64: false,
            },
            Some("base64.channel.k8s.io") => Framing {
                channels: true,
                base64: true,
            },
            _ => Framing {
                channels: false,
                base64: false,
            },
        }
    }

    /// Decodes one client data message (text or binary: gitlab-terminal treats both alike).
    pub fn decode(&self, data: &[u8]) -> Result<Input, FrameError> {
        if !self.channels {
            let bytes = self.payload(data)?;
            return Ok(if bytes.is_empty() {
                Input::Ignore
            } else {
                Input::Stdin(bytes)
            });
        }
        let Some((&first, rest)) = data.split_first() else {
            return Ok(Input::Ignore);
        };
        let channel = if self.base64 {
            first.wrapping_sub(b'0')
        } else {
            first
        };
        match channel {
            0 => Ok(Input::Stdin(self.payload(rest)?)),
            4 => {
                let json = self.payload(rest)?;
                let msg: ResizeMsg = serde_json::from_slice(&json).map_err(|_| FrameError::Resize)?;
                if msg.width == 0 || msg.height == 0 {
                    return Err(FrameError::Resize);
                }
                Ok(Input::Resize(TermSize {
                    cols: msg.width,
                    rows: msg.height,
                }))
            }
            _ => Ok(Input::Ignore),
        }
    }

    /// Frames shell output: `(is_text, payload)`.
    pub fn encode(&self, output: &[u8]) -> (bool, Vec<u8>) {
        let mut out = Vec::with_capacity(output.len() * 4 / 3 + 4);
        if self.channels {
            out.push(if self.base64 { b'1' } else { 1 });
        }
        if self.base64 {
            out.extend_from_slice(STANDARD.encode(output).as_bytes());
        } else {
            out.extend_from_slice(output);
        }
        (self.base64, out)
    }

    fn payload(&self, data: &[u8]) -> Result<Vec<u8>, FrameError> {
        if self.base64 {
            // Browsers may wrap or pad loosely; whitespace is not part of base64.
            let compact: Vec<u8> = data
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            STANDARD.decode(compact).map_err(|_| FrameError::Base64)
        } else {
            Ok(data.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_framings_carry_bytes_both_ways() {
        let raw = Framing::for_protocol(Some("terminal.gitlab.com"));
        assert_eq!(raw.decode(b"ls\r"), Ok(Input::Stdin(b"ls\r".to_vec())));
        assert_eq!(raw.encode(b"out"), (false, b"out".to_vec()));
        let b64 = Framing::for_protocol(Some("base64.terminal.gitlab.com"));
        assert_eq!(b64.decode(b"bHMNCg=="), Ok(Input::Stdin(b"ls\r\n".to_vec())));
        assert_eq!(b64.encode(b"out"), (true, b"b3V0".to_vec()));
        assert_eq!(b64.decode(b"%%%"), Err(FrameError::Base64));
        assert_eq!(Framing::for_protocol(None), raw);
    }

    #[test]
    fn channel_framings_resize_and_prefix_output() {
        let k = Framing::for_protocol(Some("channel.k8s.io"));
        assert_eq!(k.decode(b"\x00pwd\r"), Ok(Input::Stdin(b"pwd\r".to_vec())));
        assert_eq!(
            k.decode(b"\x04{\"Width\":120,\"Height\":40}"),
            Ok(Input::Resize(TermSize { cols: 120, rows: 40 }))
        );
        assert_eq!(
            k.decode(b"\x04{\"Width\":0,\"Height\":40}"),
            Err(FrameError::Resize)
        );
        assert_eq!(k.decode(b"\x04not json"), Err(FrameError::Resize));
        assert_eq!(k.decode(b"\x09x"), Ok(Input::Ignore));
        assert_eq!(k.encode(b"hi"), (false, b"\x01hi".to_vec()));
        let kb = Framing::for_protocol(Some("base64.channel.k8s.io"));
        assert_eq!(kb.decode(b"0cHdk"), Ok(Input::Stdin(b"pwd".to_vec())));
        assert_eq!(kb.encode(b"hi"), (true, b"1aGk=".to_vec()));
    }
}
