//! `roost exec` on the wire: what the client asks (`POST /v1/workloads/{name}/exec`
//! with `Connection: Upgrade`, `Upgrade: roost-exec.v1` and an [`ExecBody`]), and the
//! frames both sides exchange on the connection once the daemon answered `101
//! Switching Protocols`. Each frame is one kind byte, a big-endian u32 length and
//! that many bytes (Docker's attach stream is framed the same way, with stdin added).
//!
//! Client → daemon: `stdin` bytes, `stdin-eof`, `resize` (rows, cols as two
//! big-endian u16). Daemon → client: `stdout`, `stderr`, then exactly one `exit`
//! (the code as a big-endian i32) or `error` (UTF-8 text), then the daemon closes.
//! A client that closes its side first ends the command (SIGKILL).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `Upgrade` token.
pub const PROTOCOL: &str = "roost-exec.v1";

/// Largest frame accepted either way.
pub const MAX_FRAME: usize = 1 << 20;

/// The request body: what to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecBody {
    /// The command and its arguments (run with the user, environment and working
    /// directory of the workload's own process).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// Give the command a terminal (`roost exec -t`): stdout and stderr merge on it.
    #[serde(default)]
    pub tty: bool,
    /// Connect stdin (`roost exec -i`); otherwise it reads /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Terminal rows, with `tty` (both or neither of rows and cols).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rows: Option<u16>,
    /// Terminal columns, with `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub cols: Option<u16>,
}

impl ExecBody {
    /// Every problem with the body, each naming its field.
    pub fn problems(&self) -> Vec<crate::validate::FieldError> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(crate::validate::FieldError {
                field: field.into(),
                message,
            })
        };
        if self.command.is_empty() {
            bad(
                "command",
                "is empty; give the program to run, e.g. [\"sh\", \"-c\", \"ls\"]".into(),
            );
        } else if self.command[0].is_empty() {
            bad("command[0]", "is empty; name the program to run".into());
        }
        for (i, a) in self.command.iter().enumerate() {
            if a.contains('\0') {
                bad(
                    &format!("command[{i}]"),
                    "contains a NUL byte, which no argument can hold".into(),
                );
            }
        }
        match (self.rows, self.cols) {
            (Some(0), _) => bad("rows", "must be at least 1".into()),
            (_, Some(0)) => bad("cols", "must be at least 1".into()),
            (Some(_), None) => bad("cols", "is missing; give rows and cols together".into()),
            (None, Some(_)) => bad("rows", "is missing; give rows and cols together".into()),
            _ => {}
        }
        if !self.tty && self.rows.is_some() {
            bad(
                "rows",
                "a terminal size needs `tty: true`; drop rows and cols or ask for a tty".into(),
            );
        }
        out
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the command's stdin.
    Stdin(Vec<u8>),
    /// The client's stdin ended.
    StdinEof,
    /// The client's terminal changed size (rows, cols).
    Resize(u16, u16),
    /// Output on stdout (or the terminal).
    Stdout(Vec<u8>),
    /// Output on stderr.
    Stderr(Vec<u8>),
    /// The command ended with this code (128+N for signal N).
    Exit(i32),
    /// The session failed; the text says why.
    Error(String),
}

/// Frame errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The connection failed.
    #[error("exec connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame that breaks the protocol.
    #[error("exec protocol: {0}")]
    Bad(String),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::StdinEof => 3,
            Frame::Resize(..) => 4,
            Frame::Exit(_) => 5,
            Frame::Error(_) => 6,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Frame::Stdin(b) | Frame::Stdout(b) | Frame::Stderr(b) => b.clone(),
            Frame::StdinEof => Vec::new(),
            Frame::Resize(r, c) => [r.to_be_bytes(), c.to_be_bytes()].concat(),
            Frame::Exit(code) => code.to_be_bytes().to_vec(),
            Frame::Error(m) => m.as_bytes().to_vec(),
        }
    }

    fn decode(kind: u8, p: Vec<u8>) -> Result<Frame, ProtoError> {
        let fixed = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(ProtoError::Bad(format!(
                    "frame kind {kind} needs {n} bytes, got {}",
                    p.len()
                )))
            }
        };
        Ok(match kind {
            0 => Frame::Stdin(p),
            1 => Frame::Stdout(p),
            2 => Frame::Stderr(p),
            3 => {
                fixed(0)?;
                Frame::StdinEof
            }
            4 => {
                fixed(4)?;
                Frame::Resize(
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )
            }
            5 => {
                fixed(4)?;
                Frame::Exit(i32::from_be_bytes([p[0], p[1], p[2], p[3]]))
            }
            6 => Frame::Error(String::from_utf8_lossy(&p).into_owned()),
            k => return Err(ProtoError::Bad(format!("unknown frame kind {k}"))),
        })
    }
}

/// Write one frame (not flushed past the writer's own buffer: callers flush).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> std::io::Result<()> {
    let p = f.payload();
    let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; 5];
    head[0] = f.kind();
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(&p).await?;
    w.flush().await
}

/// Read one frame; `None` when the peer closed cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, ProtoError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ProtoError::Bad(
                    "connection closed inside a frame header".into(),
                ))
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(ProtoError::Bad(format!(
            "frame of {len} bytes is over the {MAX_FRAME}-byte limit"
        )));
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).await?;
    Frame::decode(head[0], p).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let frames = vec![
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::StdinEof,
            Frame::Resize(40, 120),
            Frame::Stdout(vec![0, 255, 10]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-3),
            Frame::Error("gone".into()),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).await.unwrap();
        }
        let mut r = &buf[..];
        for f in &frames {
            assert_eq!(read_frame(&mut r).await.unwrap().as_ref(), Some(f));
        }
        assert!(read_frame(&mut r).await.unwrap().is_none());
        for bad in [
            vec![9u8, 0, 0, 0, 0],
            vec![4, 0, 0, 0, 1, 7],
            vec![1, 0xff, 0xff, 0xff, 0xff],
            vec![1, 0, 0],
        ] {
            assert!(read_frame(&mut &bad[..]).await.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_name_every_bad_field() {
        let b = ExecBody {
            command: vec![String::new(), "a\0b".into()],
            rows: Some(0),
            ..Default::default()
        };
        let fields: Vec<_> = b.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["command[0]", "command[1]", "rows", "rows"]);
        let ok = ExecBody {
            command: vec!["sh".into()],
            tty: true,
            rows: Some(24),
            cols: Some(80),
            ..Default::default()
        };
        assert!(ok.problems().is_empty());
    }
}
