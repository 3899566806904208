//! Just enough HTTP/1.1 for the monitor's API: one request per connection, bodies with
//! Content-Length, JSON in and out. Small on purpose (the monitor stays lean).

use std::io::{self, BufRead, BufReader, Read, Write};

const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 64 << 10;

/// A parsed request.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// Why a request could not be read; `status` is what to answer.
#[derive(Debug)]
pub struct BadRequest {
    pub status: u16,
    pub message: String,
}

fn bad(status: u16, message: impl Into<String>) -> BadRequest {
    BadRequest {
        status,
        message: message.into(),
    }
}

/// Read one request from `r`.
pub fn read_request(r: impl Read) -> Result<Request, BadRequest> {
    let mut r = BufReader::new(r.take((MAX_HEAD + MAX_BODY) as u64));
    let mut line = String::new();
    let mut head_len = 0;
    let mut read_line = |r: &mut BufReader<_>, line: &mut String| -> Result<(), BadRequest> {
        line.clear();
        let n = r
            .read_line(line)
            .map_err(|e| bad(400, format!("cannot read the request: {e}")))?;
        head_len += n;
        if n == 0 {
            return Err(bad(400, "connection closed before the request ended"));
        }
        if head_len > MAX_HEAD {
            return Err(bad(431, "request head larger than 16 KiB"));
        }
        Ok(())
    };
    read_line(&mut r, &mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), Some(v)) => (m.to_string(), p.to_string(), v),
        _ => {
            return Err(bad(
                400,
                format!("malformed request line {:?}", line.trim_end()),
            ))
        }
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad(505, format!("{version}: only HTTP/1.x is spoken here")));
    }
    let mut content_length = 0usize;
    loop {
        read_line(&mut r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(bad(400, format!("malformed header {l:?}")));
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case("content-length") {
            content_length = v.trim().parse().map_err(|_| {
                bad(
                    400,
                    format!("Content-Length {:?} is not a number", v.trim()),
                )
            })?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(
                411,
                "chunked bodies are not accepted; send Content-Length",
            ));
        }
    }
    if content_length > MAX_BODY {
        return Err(bad(
            413,
            format!("body of {content_length} bytes is over 64 KiB"),
        ));
    }
    let mut body = vec![0u8; content_length];
    r.read_exact(&mut body)
        .map_err(|e| bad(400, format!("body shorter than Content-Length: {e}")))?;
    Ok(Request { method, path, body })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Write a response with an optional JSON body and close.
pub fn write_response(mut w: impl Write, status: u16, body: Option<&str>) -> io::Result<()> {
    let body = body.unwrap_or("");
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        w,
        "HTTP/1.1 {status} {}\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    )?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_put_with_a_body() {
        let raw = b"PUT /actions HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello";
        let r = read_request(&raw[..]).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/actions"));
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(
            read_request(&b"garbage\r\n\r\n"[..]).unwrap_err().status,
            400
        );
        let big = b"PUT / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n";
        assert_eq!(read_request(&big[..]).unwrap_err().status, 413);
        let short = b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nab";
        assert_eq!(read_request(&short[..]).unwrap_err().status, 400);
        let chunked = b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(read_request(&chunked[..]).unwrap_err().status, 411);
        assert_eq!(
            read_request(&b"GET / SPDY/3\r\n\r\n"[..])
                .unwrap_err()
                .status,
            505
        );
    }

    #[test]
    fn responses_carry_length_and_type() {
        let mut out = Vec::new();
        write_response(&mut out, 200, Some("{}")).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 2\r\n") && s.ends_with("\r\n\r\n{}"));
    }
}
