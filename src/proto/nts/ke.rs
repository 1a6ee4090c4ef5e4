//! NTS Key Establishment records (RFC 8915 section 4): what a client asks for and what the
//! server answers, as bytes. The TLS session around them, and the keys it exports, belong to
//! the NTS-KE server (src/daemon/nts/); this is the protocol alone.
//!
//! A record is `C (1 bit) | type (15) | body length (16) | body`; a message ends with End of
//! Message. The server speaks NTPv4 (protocol 0) and the AEADs of [`Aead::ALL`].

use super::aead::Aead;

pub const END_OF_MESSAGE: u16 = 0;
pub const NEXT_PROTOCOL: u16 = 1;
pub const ERROR: u16 = 2;
pub const WARNING: u16 = 3;
pub const AEAD_ALGORITHM: u16 = 4;
pub const NEW_COOKIE: u16 = 5;
pub const NTPV4_SERVER: u16 = 6;
pub const NTPV4_PORT: u16 = 7;
const CRITICAL: u16 = 0x8000;

/// Protocol ID of NTPv4.
pub const PROTOCOL_NTPV4: u16 = 0;

/// The error codes of an Error record.
pub const ERROR_UNRECOGNIZED_CRITICAL: u16 = 0;
pub const ERROR_BAD_REQUEST: u16 = 1;
pub const ERROR_INTERNAL: u16 = 2;

/// The label and context RFC 8915 section 5.1 gives the TLS exporter.
pub const EXPORTER_LABEL: &str = "EXPORTER-network-time-security";

/// The exporter context for `aead`'s keys: client-to-server (`s2c` false) or server-to-client.
pub fn exporter_context(aead: Aead, s2c: bool) -> [u8; 5] {
    let id = aead.id().to_be_bytes();
    [0, 0, id[0], id[1], s2c as u8]
}

/// The largest request this server reads (a real one is a few dozen bytes).
pub const MAX_REQUEST: usize = 4096;

/// What the server decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// NTPv4 with this AEAD: export the keys and send cookies.
    Ntpv4(Aead),
    /// The client offered no protocol this server speaks: an empty Next Protocol record.
    NoProtocol,
    /// An Error record with this code.
    Error(u16),
}

/// One record borrowed from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub critical: bool,
    pub record_type: u16,
    pub body: &'a [u8],
}

/// The records of `message` up to and including End of Message; None while it is incomplete.
/// Err(()) for bytes after End of Message (a bad request).
pub fn records(message: &[u8]) -> Option<Result<Vec<Record<'_>>, ()>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= message.len() {
        let head = u16::from_be_bytes([message[at], message[at + 1]]);
        let len = u16::from_be_bytes([message[at + 2], message[at + 3]]) as usize;
        let body = message.get(at + 4..at + 4 + len)?;
        let record = Record {
            critical: head & CRITICAL != 0,
            record_type: head & !CRITICAL,
            body,
        };
        at += 4 + len;
        out.push(record);
        if record.record_type == END_OF_MESSAGE {
            return Some(if at == message.len() { Ok(out) } else { Err(()) });
        }
    }
    None
}

fn u16s(body: &[u8]) -> Option<impl Iterator<Item = u16> + '_> {
    body.len()
        .is_multiple_of(2)
        .then(|| body.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
}

/// The server's decision on a complete request (see [`records`]).
pub fn negotiate(request: &[Record<'_>]) -> Negotiated {
    let mut protocols: Option<Vec<u16>> = None;
    let mut aeads: Option<Vec<u16>> = None;
    for r in request {
        match r.record_type {
            END_OF_MESSAGE => {}
            NEXT_PROTOCOL => {
                let Some(ids) = u16s(r.body) else {
                    return Negotiated::Error(ERROR_BAD_REQUEST);
                };
                if protocols.replace(ids.collect()).is_some() {
                    return Negotiated::Error(ERROR_BAD_REQUEST);
                }
            }
            AEAD_ALGORITHM => {
                let Some(ids) = u16s(r.body) else {
                    return Negotiated::Error(ERROR_BAD_REQUEST);
                };
                if aeads.replace(ids.collect()).is_some() {
                    return Negotiated::Error(ERROR_BAD_REQUEST);
                }
            }
            // A client may suggest a server or port; this server names its own.
            NTPV4_SERVER | NTPV4_PORT | WARNING => {}
            // Errors and cookies come from servers, not clients.
            ERROR | NEW_COOKIE => return Negotiated::Error(ERROR_BAD_REQUEST),
            _ if r.critical => return Negotiated::Error(ERROR_UNRECOGNIZED_CRITICAL),
            _ => {}
        }
    }
    let Some(protocols) = protocols else {
        return Negotiated::Error(ERROR_BAD_REQUEST);
    };
    if !protocols.contains(&PROTOCOL_NTPV4) {
        return Negotiated::NoProtocol;
    }
    // The client's order of preference, among what this server has (RFC 8915 section 4.1.5).
    match aeads.unwrap_or_default().into_iter().find_map(Aead::from_id) {
        Some(aead) => Negotiated::Ntpv4(aead),
        None => Negotiated::Error(ERROR_BAD_REQUEST),
    }
}

fn put(out: &mut Vec<u8>, critical: bool, record_type: u16, body: &[u8]) {
    let head = record_type | if critical { CRITICAL } else { 0 };
    out.extend_from_slice(&head.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// The response to a request negotiated as NTPv4 with `aead`: the cookies, and the NTP server
/// and port to use when they are not this host and port 123.
pub fn response(aead: Aead, cookies: &[&[u8]], server: Option<&str>, port: Option<u16>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + cookies.iter().map(|c| c.len() + 4).sum::<usize>());
    put(&mut out, true, NEXT_PROTOCOL, &PROTOCOL_NTPV4.to_be_bytes());
    put(&mut out, true, AEAD_ALGORITHM, &aead.id().to_be_bytes());
    for cookie in cookies {
        put(&mut out, false, NEW_COOKIE, cookie);
    }
    if let Some(server) = server {
        put(&mut out, true, NTPV4_SERVER, server.as_bytes());
    }
    if let Some(port) = port {
        put(&mut out, true, NTPV4_PORT, &port.to_be_bytes());
    }
    put(&mut out, true, END_OF_MESSAGE, &[]);
    out
}

/// The response refusing a request: an Error record, or (no protocol in common) an empty Next
/// Protocol record.
pub fn refusal(negotiated: &Negotiated) -> Vec<u8> {
    let mut out = Vec::new();
    match negotiated {
        Negotiated::Error(code) => put(&mut out, true, ERROR, &code.to_be_bytes()),
        _ => put(&mut out, true, NEXT_PROTOCOL, &[]),
    }
    put(&mut out, true, END_OF_MESSAGE, &[]);
    out
}

/// A client's request: NTPv4, with `aeads` in order of preference.
pub fn request(aeads: &[Aead]) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, true, NEXT_PROTOCOL, &PROTOCOL_NTPV4.to_be_bytes());
    let ids: Vec<u8> = aeads.iter().flat_map(|a| a.id().to_be_bytes()).collect();
    put(&mut out, true, AEAD_ALGORITHM, &ids);
    put(&mut out, true, END_OF_MESSAGE, &[]);
    out
}

/// What a server answered, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeResponse {
    pub aead: Option<Aead>,
    pub cookies: Vec<Vec<u8>>,
    pub server: Option<String>,
    pub port: Option<u16>,
    pub error: Option<u16>,
}

/// Reads a complete response.
pub fn parse_response(records: &[Record<'_>]) -> KeResponse {
    let mut r = KeResponse::default();
    for rec in records {
        match rec.record_type {
            AEAD_ALGORITHM if rec.body.len() == 2 => {
                r.aead = Aead::from_id(u16::from_be_bytes([rec.body[0], rec.body[1]]))
            }
            NEW_COOKIE => r.cookies.push(rec.body.to_vec()),
            NTPV4_SERVER => r.server = Some(String::from_utf8_lossy(rec.body).into_owned()),
            NTPV4_PORT if rec.body.len() == 2 => {
                r.port = Some(u16::from_be_bytes([rec.body[0], rec.body[1]]))
            }
            ERROR if rec.body.len() == 2 => r.error = Some(u16::from_be_bytes([rec.body[0], rec.body[1]])),
            _ => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(bytes: &[u8]) -> Negotiated {
        negotiate(&records(bytes).unwrap().unwrap())
    }

    #[test]
    fn a_request_is_negotiated_in_the_clients_order() {
        assert_eq!(
            decide(&request(&[Aead::GcmSiv128, Aead::SivCmac256])),
            Negotiated::Ntpv4(Aead::GcmSiv128)
        );
        assert_eq!(
            decide(&request(&[Aead::SivCmac256])),
            Negotiated::Ntpv4(Aead::SivCmac256)
        );
        // Only unknown AEADs (17 and 16): a bad request.
        let mut m = Vec::new();
        put(&mut m, true, NEXT_PROTOCOL, &[0, 0]);
        put(&mut m, true, AEAD_ALGORITHM, &[0, 17, 0, 16]);
        put(&mut m, true, END_OF_MESSAGE, &[]);
        assert_eq!(decide(&m), Negotiated::Error(ERROR_BAD_REQUEST));
    }

    #[test]
    fn bad_requests_get_their_error() {
        let msg = |records: &[(bool, u16, &[u8])]| {
            let mut m = Vec::new();
            for (c, t, b) in records {
                put(&mut m, *c, *t, b);
            }
            m
        };
        // An unknown critical record; an unknown non-critical one is ignored.
        let m = msg(&[
            (true, 0x1234, b""),
            (true, NEXT_PROTOCOL, &[0, 0]),
            (true, 0, b""),
        ]);
        assert_eq!(decide(&m), Negotiated::Error(ERROR_UNRECOGNIZED_CRITICAL));
        let m = msg(&[
            (false, 0x1234, b"x"),
            (true, NEXT_PROTOCOL, &[0, 0]),
            (true, AEAD_ALGORITHM, &[0, 15]),
            (true, 0, b""),
        ]);
        assert_eq!(decide(&m), Negotiated::Ntpv4(Aead::SivCmac256));
        // No Next Protocol, two of them, an odd body, a cookie from the client.
        assert_eq!(
            decide(&msg(&[(true, AEAD_ALGORITHM, &[0, 15]), (true, 0, b"")])),
            Negotiated::Error(ERROR_BAD_REQUEST)
        );
        let two = msg(&[
            (true, NEXT_PROTOCOL, &[0, 0]),
            (true, NEXT_PROTOCOL, &[0, 0]),
            (true, 0, b""),
        ]);
        assert_eq!(decide(&two), Negotiated::Error(ERROR_BAD_REQUEST));
        assert_eq!(
            decide(&msg(&[(true, NEXT_PROTOCOL, &[0]), (true, 0, b"")])),
            Negotiated::Error(ERROR_BAD_REQUEST)
        );
        let cookie = msg(&[
            (true, NEXT_PROTOCOL, &[0, 0]),
            (false, NEW_COOKIE, b"abcd"),
            (true, 0, b""),
        ]);
        assert_eq!(decide(&cookie), Negotiated::Error(ERROR_BAD_REQUEST));
        // Only another protocol.
        assert_eq!(
            decide(&msg(&[(true, NEXT_PROTOCOL, &[0x80, 1]), (true, 0, b"")])),
            Negotiated::NoProtocol
        );
        // Incomplete, and bytes after the end.
        let full = request(&[Aead::SivCmac256]);
        for cut in 0..full.len() {
            assert_eq!(records(&full[..cut]), None, "cut at {cut}");
        }
        let mut extra = full.clone();
        extra.push(0);
        assert_eq!(records(&extra), Some(Err(())));
    }

    #[test]
    fn a_response_reads_back() {
        let bytes = response(
            Aead::SivCmac256,
            &[b"cookie-1", b"cookie-2"],
            Some("ntp.example"),
            Some(4123),
        );
        let r = parse_response(&records(&bytes).unwrap().unwrap());
        assert_eq!(r.aead, Some(Aead::SivCmac256));
        assert_eq!(r.cookies, vec![b"cookie-1".to_vec(), b"cookie-2".to_vec()]);
        assert_eq!(
            (r.server.as_deref(), r.port, r.error),
            (Some("ntp.example"), Some(4123), None)
        );
        let refused = parse_response(&records(&refusal(&Negotiated::Error(1))).unwrap().unwrap());
        assert_eq!(refused.error, Some(1));
        assert_eq!(exporter_context(Aead::SivCmac256, true), [0, 0, 0, 15, 1]);
    }
}
